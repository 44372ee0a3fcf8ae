"""The DICOM objects ChestNet sends back to the PACS, built with highdicom.

- `findings_sr`: a Comprehensive SR in the radiograph's study with the AI's findings per
  image and, once signed, the radiologist's report.
- `overlay_sc`: a Secondary Capture of the heatmap over the radiograph, with a banner
  burned in above the image that says it is AI output, not for primary diagnosis.

Django-free, like ml/: the caller (a Celery task) builds these from stored rows. Every UID,
number and time is an input, so a re-sent object is byte for byte the same object and the
PACS replaces it instead of filing a second copy.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from PIL import Image, ImageDraw, ImageFont
from pydicom import config
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian
from pydicom.valuerep import DA, DT, TM, validate_value

MANUFACTURER = "ChestNet"
ALGORITHM_NAME = "ChestNet"
INTENDED_USE = (
    "AI output supports, and does not replace, the radiologist's reading. "
    "Intended use: frontal chest radiographs of children aged 1 to 5 years."
)
NOT_FOR_DIAGNOSIS = "AI OUTPUT – NOT FOR PRIMARY DIAGNOSIS"
SR_SERIES_DESCRIPTION = "ChestNet AI findings"
SC_SERIES_DESCRIPTION = "ChestNet AI heatmap – not for diagnosis"
# UTF-8: report text, names and the dashes above need more than the default repertoire.
CHARACTER_SET = "ISO_IR 192"

AI_LABELS = {"PNEUMONIA": "Pneumonia suspected", "NORMAL": "No pneumonia detected"}
FINDINGS = {
    "normal": "Normal",
    "pneumonia": "Pneumonia",
    "other": "Other abnormality",
    "indeterminate": "Indeterminate",
}

# DICOM has no codes for these; a private scheme (designator starting "99") is the
# standard's way to name local concepts, declared in CodingSchemeIdentificationSequence.
LOCAL_SCHEME = "99CHESTNET"
AGREEMENT = hd.sr.CodedConcept("AGREEMENT", LOCAL_SCHEME, "Agreement with AI")
SIGNED_AT = hd.sr.CodedConcept("SIGNED", LOCAL_SCHEME, "Report signed")
REPORT_VERSION = hd.sr.CodedConcept("VERSION", LOCAL_SCHEME, "Report version")
AMENDMENT_REASON = hd.sr.CodedConcept("AMENDMENT", LOCAL_SCHEME, "Amendment reason")

CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS
# Patient and study attributes highdicom's SR constructor reads without a default.
_REQUIRED_HEADER = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)

BANNER_BACKGROUND = (0, 0, 0)
BANNER_TEXT = (255, 214, 0)  # amber on black reads as a warning on any viewer palette


@dataclass(frozen=True)
class AiResult:
    """One image's AI outcome."""

    source: pydicom.Dataset  # the received instance's header (read with stop_before_pixels)
    analysed: bool  # False: the AI declined the image (not analysed)
    model_version: str
    probability: float | None = None  # P(pneumonia), 0..1
    label: str = ""  # "PNEUMONIA" or "NORMAL"
    threshold: float | None = None
    uncertainty: float | None = None  # ensemble spread (std), may be None
    reason: str = ""  # plain-words reason when not analysed


@dataclass(frozen=True)
class SignedReport:
    version: int
    finding: str  # normal / pneumonia / other / indeterminate
    agrees_with_ai: bool | None
    report: str  # free text
    author: str  # the radiologist's display name
    signed_at: datetime  # aware
    amendment_reason: str = ""


@dataclass(frozen=True)
class ObjectIdentity:
    """UIDs and numbers chosen once by the caller and stored, so a re-sent object is the
    same object."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int = 1


def new_uid() -> str:
    """A fresh UID (highdicom's root) for a new series or instance."""
    return str(hd.UID())


# --- Structured report ----------------------------------------------------------------------


def findings_sr(
    *,
    results: Sequence[AiResult],
    report: SignedReport | None,
    identity: ObjectIdentity,
    content_datetime: datetime,
    institution: str = "",
    supersedes: Sequence[ObjectIdentity] = (),
) -> pydicom.Dataset:
    """A Comprehensive SR of the AI's findings for one study's images, with the signed
    report when there is one (then COMPLETE and VERIFIED, else PARTIAL and UNVERIFIED).

    `content_datetime` is the document's time in the site's zone: every time is written as
    wall-clock time in that zone without an offset (dcmtk 3.6.7 rejects a DATETIME content
    item with one under UTF-8). `supersedes` names earlier versions of this document.
    """
    study_uid = _one_study(results)
    root = _container(codes.LN.DiagnosticImagingReport, relationship=None)
    items: list[hd.sr.ContentItem] = [_result_section(result) for result in results]
    if report is not None:
        items.append(_report_section(report, _wall_clock(report.signed_at, content_datetime)))
    items.append(hd.sr.TextContentItem(codes.DCM.Comment, INTENDED_USE, CONTAINS))
    root.ContentSequence = hd.sr.ContentSequence(items)
    with _person_name_warnings_hidden():
        sr = hd.sr.ComprehensiveSR(
            evidence=[_header(result.source) for result in results],
            content=root,
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=MANUFACTURER,
            is_complete=report is not None,
            is_final=report is not None,
            is_verified=report is not None,
            institution_name=institution or None,
            verifying_observer_name=_person_name(report.author) if report else None,
            verifying_organization=(institution or "Unknown") if report else None,
            previous_versions=[_earlier(done, study_uid) for done in supersedes] or None,
            series_description=_sr_series_description(report),
            content_date=content_datetime.date(),
            content_time=content_datetime.time(),
            specific_character_set=CHARACTER_SET,
            coding_schemes=[CodingSchemeIdentificationItem(LOCAL_SCHEME, "ChestNet local codes")],
        )
    sr.add_new("SoftwareVersions", "LO", list(dict.fromkeys(r.model_version for r in results)))
    _pin_times(sr, content_datetime)
    if report is not None:
        # highdicom stamps the verification with the build time; it happened at signing.
        signed_at = _wall_clock(report.signed_at, content_datetime)
        sr.VerifyingObserverSequence[0].VerificationDateTime = DT(signed_at)
    return sr


def _one_study(results: Sequence[AiResult]) -> str:
    studies = {str(result.source.StudyInstanceUID) for result in results}
    if len(studies) != 1:
        raise ValueError(f"An SR covers one study; the results come from {len(studies)}.")
    return studies.pop()


def _result_section(result: AiResult) -> hd.sr.ContainerContentItem:
    section = _container(codes.DCM.Findings)
    image = hd.sr.ImageContentItem(
        name=codes.DCM.SourceImage,
        referenced_sop_class_uid=result.source.SOPClassUID,
        referenced_sop_instance_uid=result.source.SOPInstanceUID,
        relationship_type=CONTAINS,
    )
    algorithm = hd.sr.AlgorithmIdentification(name=ALGORITHM_NAME, version=result.model_version)
    section.ContentSequence = hd.sr.ContentSequence([*algorithm, image, *_ai_outcome(result)])
    return section


def _ai_outcome(result: AiResult) -> list[hd.sr.ContentItem]:
    if not result.analysed:
        reason = result.reason or "no reason recorded"
        return [hd.sr.TextContentItem(codes.DCM.Comment, f"Not analysed: {reason}", CONTAINS)]
    items: list[hd.sr.ContentItem] = []
    if result.label:
        label = AI_LABELS.get(result.label, result.label)
        items.append(hd.sr.TextContentItem(codes.DCM.Finding, label, CONTAINS))
    for name, value in (
        (codes.DCM.Probability, result.probability),
        (codes.DCM.ThresholdValue, result.threshold),
        (codes.DCM.StandardDeviation, result.uncertainty),
    ):
        if value is not None:
            items.append(_fraction(name, value))
    return items


def _fraction(name: Code, value: float) -> hd.sr.NumContentItem:
    # Four decimals say all a probability can; UCUM "1" is the unit of a pure number.
    return hd.sr.NumContentItem(name, round(float(value), 4), codes.UCUM.NoUnits, None, CONTAINS)


def _report_section(report: SignedReport, signed_at: datetime) -> hd.sr.ContainerContentItem:
    section = _container(codes.DCM.Impressions)
    author = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=_person_name(report.author)
        ),
    )
    finding = FINDINGS.get(report.finding, report.finding)
    items: list[hd.sr.ContentItem] = [
        *author,
        hd.sr.TextContentItem(codes.DCM.Finding, finding, CONTAINS),
    ]
    if report.agrees_with_ai is not None:
        agreement = "Agrees with the AI" if report.agrees_with_ai else "Disagrees with the AI"
        items.append(hd.sr.TextContentItem(AGREEMENT, agreement, CONTAINS))
    if report.report.strip():
        items.append(hd.sr.TextContentItem(codes.DCM.Impression, report.report, CONTAINS))
    items.append(hd.sr.DateTimeContentItem(SIGNED_AT, DT(signed_at), CONTAINS))
    items.append(hd.sr.TextContentItem(REPORT_VERSION, str(report.version), CONTAINS))
    if report.amendment_reason.strip():
        reason = report.amendment_reason
        items.append(hd.sr.TextContentItem(AMENDMENT_REASON, reason, CONTAINS))
    section.ContentSequence = hd.sr.ContentSequence(items)
    return section


def _container(
    name: Code,
    relationship: hd.sr.RelationshipTypeValues | None = CONTAINS,
) -> hd.sr.ContainerContentItem:
    return hd.sr.ContainerContentItem(
        name=name, is_content_continuous=False, relationship_type=relationship
    )


def _sr_series_description(report: SignedReport | None) -> str:
    return SR_SERIES_DESCRIPTION if report is None else f"ChestNet report v{report.version}"


def _earlier(identity: ObjectIdentity, study_uid: str) -> pydicom.Dataset:
    earlier = pydicom.Dataset()
    earlier.StudyInstanceUID = study_uid
    earlier.SeriesInstanceUID = identity.series_instance_uid
    earlier.SOPInstanceUID = identity.sop_instance_uid
    earlier.SOPClassUID = ComprehensiveSRStorage
    return earlier


# --- Secondary capture ----------------------------------------------------------------------


def overlay_sc(
    *,
    source: pydicom.Dataset,
    overlay_rgb: np.ndarray,
    identity: ObjectIdentity,
    model_version: str,
    probability: float | None,
    label: str,
    content_datetime: datetime | None = None,
) -> pydicom.Dataset:
    """A Secondary Capture of the heatmap over the radiograph (uint8 RGB, H x W x 3) with a
    banner band burned in above it: the result is (H + band) x W x 3.

    `content_datetime` (default: now) makes the object reproducible when given.
    """
    _check_rgb(overlay_rgb)
    when = content_datetime or datetime.now()
    lines = banner_lines(model_version=model_version, probability=probability, label=label)
    header = _header(source)
    with _person_name_warnings_hidden():
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=with_banner(overlay_rgb, lines),
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=MANUFACTURER,
            # highdicom takes single letters only; the real value is copied below.
            patient_orientation=("L", "F"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            specific_character_set=CHARACTER_SET,
            series_description=SC_SERIES_DESCRIPTION,
            software_versions=model_version,
            content_date=when.date(),
            content_time=when.time(),
        )
        sc.copy_patient_and_study_information(header)
    _describe_overlay(sc, source, lines, model_version)
    _pin_times(sc, when)
    return sc


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"The overlay must be uint8 RGB (H x W x 3), not {image.dtype} {image.shape}."
        )


def _describe_overlay(
    sc: pydicom.Dataset, source: pydicom.Dataset, lines: Sequence[str], model_version: str
) -> None:
    # The overlay keeps the radiograph's layout (no flips or rotations), so its orientation
    # is the source's; Type 2, so empty when the source does not say.
    sc.PatientOrientation = source.get("PatientOrientation")
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = f"{SC_SERIES_DESCRIPTION}. {' · '.join(lines)}"
    sc.DerivationDescription = (
        f"Grad-CAM heatmap of {ALGORITHM_NAME} {model_version} blended over the source "
        "radiograph; a banner saying it is AI output is burned in above the image."
    )
    reference = pydicom.Dataset()
    reference.ReferencedSOPClassUID = source.SOPClassUID
    reference.ReferencedSOPInstanceUID = source.SOPInstanceUID
    purpose = hd.sr.CodedConcept.from_code(codes.DCM.SourceImageForImageProcessingOperation)
    reference.PurposeOfReferenceCodeSequence = [purpose]
    sc.SourceImageSequence = [reference]


def banner_lines(*, model_version: str, probability: float | None, label: str) -> list[str]:
    """The banner's text: the warning, then what the model said."""
    result = "P(pneumonia) " + ("n/a" if probability is None else f"{probability:.2f}")
    if label:
        result += f" {label}"
    return [NOT_FOR_DIAGNOSIS, f"{ALGORITHM_NAME} {model_version} · {result}"]


def with_banner(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """`image` (uint8 RGB) under a black band holding `lines`, wrapped to the image's width;
    the image itself is not drawn on."""
    width = image.shape[1]
    font = _banner_font(width)
    margin = max(2, width // 100)
    wrapped = [part for line in lines for part in _wrap(_drawable(line), font, width - 2 * margin)]
    line_height = font.getbbox("Ag")[3] + margin
    band = Image.new("RGB", (width, len(wrapped) * line_height + margin), BANNER_BACKGROUND)
    draw = ImageDraw.Draw(band)
    for row, text in enumerate(wrapped):
        draw.text((margin, margin + row * line_height), text, font=font, fill=BANNER_TEXT)
    return np.concatenate([np.asarray(band, dtype=np.uint8), image], axis=0)


def _banner_font(width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled default font: nothing to fetch or install.
    return ImageFont.load_default(size=min(48, max(10, width // 40)))


def _drawable(text: str) -> str:
    # Pillow's bundled font has no en dash (it would draw a box); a hyphen reads the same.
    return text.replace("–", "-")


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


# --- Shared ---------------------------------------------------------------------------------


def dataset_bytes(ds: pydicom.Dataset) -> bytes:
    """`ds` as a Part 10 file: preamble, file meta, explicit VR little endian."""
    syntax = getattr(ds, "file_meta", pydicom.Dataset()).get("TransferSyntaxUID")
    if syntax != ExplicitVRLittleEndian:
        raise ValueError(f"Expected explicit VR little endian, the dataset has {syntax}.")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _header(source: pydicom.Dataset) -> pydicom.Dataset:
    """A copy of `source` that highdicom can build from. A PACS may leave out Type 2
    patient and study attributes or send a sex outside M/F/O, and de-identification
    pipelines write values their VR does not allow (a 56-character hash as a birth date or
    an accession number): highdicom rejects both. A value that does not conform is left
    empty where the attribute is Type 2 (those highdicom requires) and left out otherwise,
    never a reason not to build."""
    header = copy.deepcopy(source)
    for element in list(header):
        if element.VR == "SQ" or element.tag.is_private or element.tag.group <= 0x0002:
            continue
        if not _conforms(element):
            if element.keyword in _REQUIRED_HEADER:
                element.value = None
            else:
                del header[element.tag]
    for keyword in _REQUIRED_HEADER:
        if keyword not in header:
            setattr(header, keyword, None)
    if header.PatientSex not in ("M", "F", "O"):
        header.PatientSex = None
    return header


def _conforms(element: pydicom.DataElement) -> bool:
    """Whether every value of the element is valid for its VR (length, characters, form)."""
    if element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN", "UT", "UR", "UC"):
        return True  # bulk or unlimited: nothing highdicom checks
    values = element.value if isinstance(element.value, MultiValue) else [element.value]
    try:
        for value in values:
            if value is not None and value != "":
                validate_value(element.VR, value, config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def _person_name(display_name: str) -> str:
    """A display name as a DICOM PN. Without a caret the whole name is the family-name
    component, marked by a trailing caret (highdicom rejects caret-less names)."""
    name = " ".join(display_name.replace("\\", " ").replace("=", " ").split())[:64]
    if "^" in name:
        return name
    return f"{name or 'Unknown'}^"


@contextmanager
def _person_name_warnings_hidden() -> Iterator[None]:
    # highdicom warns about caret-less patient names with the name in the message; no
    # patient data in logs, and the name is copied from the PACS as it is anyway.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent")
        yield


def _wall_clock(moment: datetime, zone_of: datetime) -> datetime:
    """`moment` as naive wall-clock time in the zone of `zone_of` (the system's when naive)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(zone_of.tzinfo).replace(tzinfo=None)


def _pin_times(ds: pydicom.Dataset, moment: datetime) -> None:
    """Replace the build-time stamps highdicom writes with `moment`, so rebuilding gives the
    same bytes."""
    when = _wall_clock(moment, moment)
    ds.InstanceCreationDate = DA(when.date())
    ds.InstanceCreationTime = TM(when.time())
    if "DateOfSecondaryCapture" in ds:
        ds.DateOfSecondaryCapture = DA(when.date())
        ds.TimeOfSecondaryCapture = TM(when.time())
    for equipment in ds.get("ContributingEquipmentSequence", []):
        if equipment.get("ManufacturerModelName") == "highdicom":
            equipment.ContributionDateTime = DT(when)
