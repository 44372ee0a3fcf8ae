"""The SR and the Secondary Capture ChestNet sends back to the PACS, built from a real CR
chest header (pydicom-data's RG1) and checked with pydicom and, where installed, dcmtk."""

from __future__ import annotations

import copy
import io
import shutil
import subprocess
import warnings
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from dicomnet.objects import (
    INTENDED_USE,
    AiResult,
    ObjectIdentity,
    SignedReport,
    dataset_bytes,
    findings_sr,
    new_uid,
    overlay_sc,
)

WHEN = datetime(2024, 5, 1, 10, 5, 0)
SIGNED = datetime(2024, 5, 1, 9, 30, 0, tzinfo=UTC)
SR_ID = ObjectIdentity(
    series_instance_uid="1.2.826.0.1.3680043.10.1.1",
    sop_instance_uid="1.2.826.0.1.3680043.10.1.1.1",
    series_number=901,
)
SC_ID = ObjectIdentity(
    series_instance_uid="1.2.826.0.1.3680043.10.1.2",
    sop_instance_uid="1.2.826.0.1.3680043.10.1.2.1",
    series_number=902,
)


def _header(name: str) -> pydicom.Dataset:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom-data would have to download {name}")
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.fixture(scope="module")
def chest() -> pydicom.Dataset:
    """A CR chest radiograph's header (RG1: CHEST, PA)."""
    return _header("RG1_UNCR.dcm")


@pytest.fixture(scope="module")
def other_study() -> pydicom.Dataset:
    return _header("RG3_UNCR.dcm")


def _flagged(source: pydicom.Dataset, **overrides) -> AiResult:
    fields = dict(
        source=source,
        analysed=True,
        model_version="2024.05-ens5",
        probability=0.87,
        label="PNEUMONIA",
        threshold=0.42,
        uncertainty=0.031,
    )
    return AiResult(**(fields | overrides))


def _declined(source: pydicom.Dataset) -> AiResult:
    return AiResult(
        source=source,
        analysed=False,
        model_version="2024.05-ens5",
        reason="the image is a lateral view",
    )


def _signed(**overrides) -> SignedReport:
    fields = dict(
        version=2,
        finding="pneumonia",
        agrees_with_ai=True,
        report="Right lower lobe consolidation, no effusion. Befund: Pneumonie (Müller).",
        author="Dr Jane Smith",
        signed_at=SIGNED,
        amendment_reason="Laterality corrected",
    )
    return SignedReport(**(fields | overrides))


def _sr(results, report=None, **kwargs) -> pydicom.Dataset:
    fields = dict(results=results, report=report, identity=SR_ID, content_datetime=WHEN)
    return findings_sr(**(fields | kwargs))


def _second_image(source: pydicom.Dataset) -> pydicom.Dataset:
    """Another image of the same study (a second view)."""
    other = copy.deepcopy(source)
    other.SOPInstanceUID = new_uid()
    other.SeriesInstanceUID = new_uid()
    return other


def _content(ds: pydicom.Dataset) -> list[tuple[str, str]]:
    """Every content item below `ds` as (concept name, value as text), depth first."""
    pairs = []
    for item in ds.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        pairs.append((name, _value(item)))
        pairs.extend(_content(item))
    return pairs


def _value(item: pydicom.Dataset) -> str:
    kind = item.ValueType
    if kind == "NUM":
        return str(item.MeasuredValueSequence[0].NumericValue)
    if kind == "IMAGE":
        return str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    attribute = {"TEXT": "TextValue", "PNAME": "PersonName", "DATETIME": "DateTime"}.get(kind)
    if attribute:
        return str(item.get(attribute))
    if kind == "CODE":
        return str(item.ConceptCodeSequence[0].CodeMeaning)
    return ""


def _sections(sr: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def _evidence(sr: pydicom.Dataset) -> set[str]:
    return {
        instance.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }


# --- The structured report -------------------------------------------------------------------


def test_sr_sits_in_the_radiographs_study_in_the_series_the_caller_chose(chest):
    sr = _sr([_flagged(chest)])

    assert sr.SOPClassUID == ComprehensiveSRStorage and sr.Modality == "SR"
    assert (sr.StudyInstanceUID, sr.PatientID) == (chest.StudyInstanceUID, chest.PatientID)
    assert (sr.PatientName, sr.PatientBirthDate) == (chest.PatientName, chest.PatientBirthDate)
    assert sr.AccessionNumber == chest.AccessionNumber
    assert (sr.SeriesInstanceUID, sr.SOPInstanceUID) == (
        SR_ID.series_instance_uid,
        SR_ID.sop_instance_uid,
    )
    assert (sr.SeriesNumber, sr.InstanceNumber) == (901, 1)
    assert sr.Manufacturer == "ChestNet"
    assert sr.SeriesDescription == "ChestNet AI findings"
    assert sr.SeriesInstanceUID != chest.SeriesInstanceUID


def test_sr_evidence_and_image_references_name_every_source_instance(chest):
    second = _second_image(chest)

    sr = _sr([_flagged(chest), _declined(second)])

    assert _evidence(sr) == {chest.SOPInstanceUID, second.SOPInstanceUID}
    images = [value for name, value in _content(sr) if name == "Source image"]
    assert images == [chest.SOPInstanceUID, second.SOPInstanceUID]
    assert "PertinentOtherEvidenceSequence" not in sr


def test_sr_records_probability_label_threshold_spread_and_the_model(chest):
    (section,) = _sections(_sr([_flagged(chest)]), "Findings")

    content = _content(section)
    assert ("Algorithm Name", "ChestNet") in content
    assert ("Algorithm Version", "2024.05-ens5") in content
    assert ("Probability", "0.87") in content
    assert ("Threshold Value", "0.42") in content
    assert ("Standard Deviation", "0.031") in content
    assert ("Finding", "Pneumonia suspected") in content
    probability = next(
        item
        for item in section.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Probability"
    )
    unit = probability.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("1", "UCUM")


def test_sr_says_no_pneumonia_for_a_normal_result_and_leaves_out_a_missing_spread(chest):
    result = _flagged(chest, probability=0.08, label="NORMAL", uncertainty=None)

    content = _content(_sr([result]))

    assert ("Finding", "No pneumonia detected") in content
    assert ("Probability", "0.08") in content
    assert "Standard Deviation" not in dict(content)


def test_sr_gives_the_reason_an_image_was_not_analysed_and_no_numbers(chest):
    content = _content(_sr([_declined(chest)]))

    assert ("Comment", "Not analysed: the image is a lateral view") in content
    assert not {"Probability", "Finding", "Threshold Value"} & set(dict(content))
    assert ("Algorithm Version", "2024.05-ens5") in content


@pytest.mark.parametrize("signed", [False, True])
def test_sr_always_states_the_intended_use(chest, signed):
    sr = _sr([_flagged(chest)], report=_signed() if signed else None)

    assert ("Comment", INTENDED_USE) in _content(sr)
    assert "children aged 1 to 5 years" in INTENDED_USE


def test_sr_without_a_report_is_partial_unverified_and_preliminary(chest):
    sr = _sr([_flagged(chest)])

    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "PARTIAL",
        "UNVERIFIED",
        "PRELIMINARY",
    )
    assert "VerifyingObserverSequence" not in sr
    assert not _sections(sr, "Impressions")


def test_signed_report_is_complete_verified_by_its_author_at_signing_time(chest):
    site_time = datetime(2024, 5, 1, 12, 5, tzinfo=timezone(timedelta(hours=2)))

    sr = _read_back(
        _sr(
            [_flagged(chest)],
            report=_signed(),
            institution="St Elsewhere Children's",
            content_datetime=site_time,
        )
    )

    assert (sr.CompletionFlag, sr.VerificationFlag, sr.PreliminaryFlag) == (
        "COMPLETE",
        "VERIFIED",
        "FINAL",
    )
    (observer,) = sr.VerifyingObserverSequence
    assert str(observer.VerifyingObserverName) == "Dr Jane Smith^"
    assert observer.VerifyingOrganization == "St Elsewhere Children's"
    # Signed 09:30 UTC, written as the site's wall-clock time like the content time.
    assert observer.VerificationDateTime == "20240501113000"
    assert (sr.ContentDate, sr.ContentTime) == ("20240501", "120500")
    assert sr.InstanceCreationTime == "120500"
    assert sr.SeriesDescription == "ChestNet report v2"
    assert sr.InstitutionName == "St Elsewhere Children's"


def test_signed_report_content_holds_finding_agreement_text_author_version_and_reason(chest):
    (section,) = _sections(_sr([_flagged(chest)], report=_signed()), "Impressions")

    content = _content(section)
    assert ("Person Observer Name", "Dr Jane Smith^") in content
    assert ("Finding", "Pneumonia") in content
    assert ("Agreement with AI", "Agrees with the AI") in content
    assert ("Impression", _signed().report) in content
    assert ("Report version", "2") in content
    assert ("Amendment reason", "Laterality corrected") in content
    assert dict(content)["Report signed"].startswith("20240501")


def test_disagreement_and_a_first_version_without_amendment(chest):
    report = _signed(version=1, finding="normal", agrees_with_ai=False, amendment_reason="")

    content = _content(_sr([_flagged(chest)], report=report))

    assert ("Finding", "Normal") in content
    assert ("Agreement with AI", "Disagrees with the AI") in content
    assert "Amendment reason" not in dict(content)


def test_amended_report_names_the_version_it_replaces(chest):
    earlier = ObjectIdentity(
        series_instance_uid=new_uid(), sop_instance_uid=new_uid(), series_number=901
    )

    sr = _sr([_flagged(chest)], report=_signed(), supersedes=[earlier])

    (study,) = sr.PredecessorDocumentsSequence
    (series,) = study.ReferencedSeriesSequence
    assert study.StudyInstanceUID == chest.StudyInstanceUID
    assert series.SeriesInstanceUID == earlier.series_instance_uid
    assert series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == earlier.sop_instance_uid


def test_results_from_two_studies_are_refused(chest, other_study):
    assert chest.StudyInstanceUID != other_study.StudyInstanceUID

    with pytest.raises(ValueError, match="one study"):
        _sr([_flagged(chest), _flagged(other_study)])


def test_no_results_are_refused():
    with pytest.raises(ValueError, match="one study"):
        _sr([])


def test_same_inputs_and_identity_give_the_same_bytes(chest):
    def build():
        return dataset_bytes(_sr([_flagged(chest)], report=_signed()))

    first = build()

    assert build() == first
    later = findings_sr(
        results=[_flagged(chest)],
        report=_signed(),
        identity=SR_ID,
        content_datetime=datetime(2024, 5, 2, 8, 0),
    )
    assert dataset_bytes(later) != first


def test_dataset_bytes_is_a_part_10_file_that_reads_back_with_its_text(chest):
    sr = _sr([_flagged(chest)], report=_signed())

    data = dataset_bytes(sr)

    assert data[:128] == bytes(128) and data[128:132] == b"DICM"
    back = pydicom.dcmread(io.BytesIO(data))
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert back.file_meta.MediaStorageSOPInstanceUID == SR_ID.sop_instance_uid
    assert ("Impression", _signed().report) in _content(back)  # UTF-8 survives
    assert str(back.PatientName) == str(chest.PatientName)


def test_dataset_bytes_refuses_implicit_vr(chest):
    sr = _sr([_flagged(chest)])
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian

    with pytest.raises(ValueError, match="explicit VR"):
        dataset_bytes(sr)


def _sparse(chest: pydicom.Dataset) -> pydicom.Dataset:
    sparse = copy.deepcopy(chest)
    for keyword in ("PatientBirthDate", "StudyID", "ReferringPhysicianName"):
        delattr(sparse, keyword)
    sparse.PatientName = "Nosurname"  # no caret: highdicom warns, naming the patient
    sparse.PatientSex = "X"  # outside M/F/O: highdicom refuses it
    return sparse


def test_a_sparse_pacs_header_still_builds(chest):
    sr = _sr([_flagged(_sparse(chest))])

    assert sr.StudyInstanceUID == chest.StudyInstanceUID
    assert sr["PatientBirthDate"].is_empty and sr["PatientSex"].is_empty  # Type 2: present
    assert str(sr.PatientName) == "Nosurname"


def test_building_never_puts_the_patients_name_in_a_warning_or_log(chest, caplog):
    sparse = _sparse(chest)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _sr([_flagged(sparse)])
        _sc(sparse)

    assert not [w for w in caught if "Nosurname" in str(w.message)]
    assert "Nosurname" not in caplog.text


def test_new_uids_are_fresh_valid_uids():
    first, second = new_uid(), new_uid()

    assert first != second
    assert pydicom.uid.UID(first).is_valid


# --- The secondary capture -----------------------------------------------------------------


def _overlay(height: int = 240, width: int = 200) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _sc(source, overlay=None, **kwargs) -> pydicom.Dataset:
    fields = dict(
        source=source,
        overlay_rgb=_overlay() if overlay is None else overlay,
        identity=SC_ID,
        model_version="2024.05-ens5",
        probability=0.87,
        label="PNEUMONIA",
        content_datetime=WHEN,
    )
    return overlay_sc(**(fields | kwargs))


def _read_back(ds: pydicom.Dataset) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(dataset_bytes(ds)))


def test_sc_is_the_overlay_under_a_band_of_burned_in_text(chest):
    overlay = _overlay()

    sc = _read_back(_sc(chest, overlay))

    pixels = sc.pixel_array
    band = pixels.shape[0] - overlay.shape[0]
    assert band > 0
    assert pixels.shape == (overlay.shape[0] + band, overlay.shape[1], 3)
    assert (sc.PhotometricInterpretation, sc.SamplesPerPixel) == ("RGB", 3)
    np.testing.assert_array_equal(pixels[band:], overlay)
    banner = pixels[:band]
    colours = np.unique(banner.reshape(-1, 3), axis=0)
    assert len(colours) > 2  # background, text and anti-aliased edges
    assert not np.array_equal(banner, overlay[:band])


def test_sc_says_it_is_ai_output_not_for_diagnosis(chest):
    sc = _sc(chest)

    assert sc.BurnedInAnnotation == "YES"
    assert "not for diagnosis" in sc.SeriesDescription
    assert "NOT FOR PRIMARY DIAGNOSIS" in sc.ImageComments
    assert "P(pneumonia) 0.87 PNEUMONIA" in sc.ImageComments
    assert "2024.05-ens5" in sc.ImageComments and "2024.05-ens5" in sc.DerivationDescription
    assert (sc.ConversionType, sc.Manufacturer) == ("WSD", "ChestNet")


def test_sc_sits_in_the_source_study_in_a_new_series_and_names_its_source(chest):
    sc = _sc(chest)

    assert sc.SOPClassUID == SecondaryCaptureImageStorage
    assert (sc.StudyInstanceUID, sc.PatientID) == (chest.StudyInstanceUID, chest.PatientID)
    assert (sc.SeriesInstanceUID, sc.SOPInstanceUID, sc.SeriesNumber) == (
        SC_ID.series_instance_uid,
        SC_ID.sop_instance_uid,
        902,
    )
    (reference,) = sc.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == chest.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == chest.SOPClassUID
    assert list(sc.PatientOrientation) == list(chest.PatientOrientation)


def _text_lines(band: np.ndarray) -> int:
    """How many separate runs of rows hold text (any non-black pixel)."""
    inked = band.any(axis=(1, 2)).astype(int)
    return int(np.count_nonzero(np.diff(inked, prepend=0) == 1))


@pytest.mark.parametrize(("width", "lines"), [(1200, 2), (96, 5)])
def test_sc_banner_text_fits_the_width_wrapping_on_narrow_images(chest, width, lines):
    pixels = _sc(chest, np.zeros((50, width, 3), np.uint8)).pixel_array
    band = pixels[: pixels.shape[0] - 50]

    assert _text_lines(band) >= lines
    assert not band[:, -2:].any()  # the right margin stays clear: nothing cut off


def test_sc_is_reproducible_with_a_content_time(chest):
    assert dataset_bytes(_sc(chest)) == dataset_bytes(_sc(chest))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((40, 40), np.uint8),
        np.zeros((40, 40, 3), np.float32),
        np.zeros((40, 40, 4), np.uint8),
    ],
)
def test_sc_refuses_anything_but_uint8_rgb(chest, bad):
    with pytest.raises(ValueError, match="uint8 RGB"):
        _sc(chest, bad)


# --- dcmtk reads them ----------------------------------------------------------------------

needs_dcmtk = pytest.mark.skipif(
    shutil.which("dsrdump") is None or shutil.which("dcmdump") is None,
    reason="dcmtk (dsrdump, dcmdump) is not installed",
)


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        errors="replace",  # dcmdump cuts long values mid-character
        timeout=60,
    )


@needs_dcmtk
@pytest.mark.parametrize("signed", [False, True])
def test_dsrdump_accepts_the_sr_and_shows_model_version_and_probability(chest, tmp_path, signed):
    path = tmp_path / "sr.dcm"
    second = _second_image(chest)
    sr = _sr([_flagged(chest), _declined(second)], report=_signed() if signed else None)
    path.write_bytes(dataset_bytes(sr))

    # +U8 prints in UTF-8; dsrdump exits non-zero when the tree breaks the IOD's
    # relationship constraints or an item's value is invalid.
    structured = _run("dsrdump", "+U8", "+Pl", path)
    assert structured.returncode == 0, structured.stderr
    assert not [line for line in structured.stderr.splitlines() if line.startswith(("E:", "F:"))]
    assert "Comprehensive SR Document" in structured.stdout
    assert '"Algorithm Version")="2024.05-ens5"' in structured.stdout
    assert '"Probability")="0.87"' in structured.stdout
    assert "Not analysed: the image is a lateral view" in structured.stdout
    assert ("VERIFIED" if signed else "UNVERIFIED") in structured.stdout
    if signed:
        assert "Pneumonie (Müller)" in structured.stdout

    dumped = _run("dcmdump", "+U8", path)
    assert dumped.returncode == 0, dumped.stderr
    assert "2024.05-ens5" in dumped.stdout and "[0.87]" in dumped.stdout


@needs_dcmtk
def test_dcmdump_reads_the_sc(chest, tmp_path):
    path = tmp_path / "sc.dcm"
    path.write_bytes(dataset_bytes(_sc(chest)))

    dumped = _run("dcmdump", "+U8", path)

    assert dumped.returncode == 0, dumped.stderr
    assert "BurnedInAnnotation" in dumped.stdout and "[YES]" in dumped.stdout
    assert "[WSD]" in dumped.stdout


def _hashed(chest: pydicom.Dataset) -> pydicom.Dataset:
    """A de-identification pipeline's output: hashes where its VR allows no such value."""
    hashed = copy.deepcopy(chest)
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15"  # 56 characters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when told such a value
        hashed.PatientBirthDate = digest
        hashed.AccessionNumber = digest
        hashed.PatientAge = "54"  # AS without its unit
        hashed.StudyTime = "25:99"
    return hashed


def test_non_conformant_copied_values_are_left_empty_or_out_and_both_objects_build(chest):
    hashed = _hashed(chest)

    sr, sc = _sr([_flagged(hashed)]), _sc(hashed)

    for built in (sr, sc):
        assert built["PatientBirthDate"].is_empty and built["AccessionNumber"].is_empty  # Type 2
        assert "PatientAge" not in built  # Type 3: left out
        assert (
            built.PatientID == chest.PatientID and built.StudyInstanceUID == chest.StudyInstanceUID
        )
    for built in (sr, sc):
        reread = pydicom.dcmread(io.BytesIO(dataset_bytes(built)))
        assert reread.PatientID == chest.PatientID
