"""ml.header: reading intended-use facts from DICOM headers, ages in every form hospitals
write them, and the rules that refuse a file on its header alone."""

from __future__ import annotations

import io
import random
import re
import struct

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from ml.header import (
    HeaderFacts,
    Population,
    age_from_dates,
    age_refusal,
    header_refusal,
    parse_age,
    read_header,
)
from ml.outcome import REFUSAL_REASONS, Refusal

CHILDREN = Population()
# A typical in-scope child's radiograph: every rule passes.
IN_SCOPE = HeaderFacts(
    modality="DX",
    body_part="CHEST",
    view_position="PA",
    species="",
    age_years=3.0,
    age_source="PatientAge",
)


def _facts(**changes: object) -> HeaderFacts:
    return HeaderFacts(**{**IN_SCOPE.__dict__, **changes})


def _code_item(meaning: str, value: str = "", scheme: str = "SCT") -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value or "0", scheme, meaning
    return item


# --- parse_age ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "years"),
    [
        # DICOM AS, nnnD/W/M/Y
        ("005Y", 5.0),
        ("018M", 1.5),
        ("012W", 12 * 7 / 365.25),
        ("200D", 200 / 365.25),
        ("000Y", 0.0),
        ("130Y", 130.0),
        # Non-standard forms seen from older systems and RIS free text
        ("5", 5.0),
        ("5Y", 5.0),
        ("5 y", 5.0),
        ("5 years", 5.0),
        ("5 Years", 5.0),
        ("5 years old", 5.0),
        ("05yrs", 5.0),
        ("5 yrs.", 5.0),
        ("1 year", 1.0),
        ("60 months", 5.0),
        ("60M", 5.0),
        ("60 mo", 5.0),
        ("18 mths", 1.5),
        ("3 weeks", 3 * 7 / 365.25),
        ("10 days", 10 / 365.25),
        ("5.5", 5.5),
        ("5,5", 5.5),
        ("4 Y 6 M", 4.5),
        ("4y 6m", 4.5),
        ("4 years 6 months", 4.5),
        ("1Y6M", 1.5),
        ("1y6m", 1.5),
        ("  005Y ", 5.0),
        ("005Y\x00", 5.0),
    ],
)
def test_parse_age_reads_standard_and_common_non_standard_forms(text, years):
    assert parse_age(text) == pytest.approx(years)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Y",
        "abc",
        "five",
        "-5",
        "-005Y",
        "131Y",
        "999",
        "200 years",
        "5X",
        "5 apples",
        "4 Y 6",  # six months or six years? refuse to guess
        "5Y 5Y",
        "5..5",
        "1e3",
        "nan",
        "inf",
        "5Y-",
        "٥Y٥",
        "9" * 400,
    ],
)
def test_parse_age_returns_none_for_unparseable_ambiguous_or_absurd_text(text):
    assert parse_age(text) is None


# --- age_from_dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "reference", "years"),
    [
        ("20200101", "20250101", 5.0),
        ("20200615", "20200615", 0.0),
        ("20200101", "20200702", 0.5),  # 183 of 366 days of a leap year
        ("1940.03.05", "2004.08.26", 64 + 174 / 365),  # ACR-NEMA style dots
        ("2021-01-01", "2027-01-01", 6.0),
    ],
)
def test_age_from_dates_counts_calendar_years_and_the_fraction_of_the_current_one(
    birth, reference, years
):
    assert age_from_dates(birth, reference) == pytest.approx(years, abs=1e-9)


def test_the_sixth_birthday_is_exactly_six_whatever_the_leap_years():
    # 2021-2027 holds one leap day, 2019-2025 two: days / 365.25 would put one on each side.
    for born in ("20210101", "20190101", "20180301"):
        sixth = str(int(born[:4]) + 6) + born[4:]
        assert age_from_dates(born, sixth) == 6.0
    assert age_from_dates("20210101", "20261231") < 6.0


def test_a_leap_day_birthday_falls_on_the_first_of_march_in_common_years():
    assert age_from_dates("20200229", "20210228") < 1.0
    assert age_from_dates("20200229", "20210301") == 1.0
    assert age_from_dates("20200229", "20240229") == 4.0


@pytest.mark.parametrize(
    ("birth", "reference"),
    [
        ("", "20250101"),
        ("20200101", ""),
        ("20250101", "20200101"),  # reference before birth
        ("20201301", "20250101"),  # month 13
        ("20200230", "20250101"),
        ("00000000", "20250101"),
        ("2020", "2025"),
        ("18000101", "20250101"),  # 225 years
        ("unknown", "20250101"),
        ("20200101120000", "20250101"),
    ],
)
def test_age_from_dates_returns_none_for_bad_or_absurd_dates(birth, reference):
    assert age_from_dates(birth, reference) is None


# --- read_header ----------------------------------------------------------------------------


def _header(**elements: object) -> Dataset:
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # on purpose
def test_read_header_collects_the_intended_use_fields():
    ds = _header(
        Modality="dx",  # lower case, as some writers do
        BodyPartExamined="CHEST",
        ViewPosition="AP",
        StudyDescription="XR Chest 1 view",
        SeriesDescription="Chest AP portable",
        PatientSpeciesDescription="Homo sapiens",
        PatientAge="003Y",
        PatientBirthDate="20000101",
        StudyDate="20240101",
    )

    facts = read_header(ds)

    assert facts == HeaderFacts(
        modality="DX",
        body_part="CHEST",
        view_position="AP",
        view_code="",
        study_description="XR Chest 1 view",
        series_description="Chest AP portable",
        species="Homo sapiens",
        age_years=3.0,
        age_source="PatientAge",
    )


def test_read_header_of_an_empty_dataset_is_all_blank():
    assert read_header(Dataset()) == HeaderFacts()


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # on purpose
def test_dates_give_the_age_when_patient_age_is_missing_or_unparseable():
    for age in (None, "", "unknown", "999Y"):
        ds = _header(PatientBirthDate="20200301", StudyDate="20230901")
        if age is not None:
            ds.PatientAge = age

        facts = read_header(ds)

        assert facts.age_years == pytest.approx(3.5, abs=0.01) and facts.age_source == "dates"


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA:UserWarning")  # "garbage"
@pytest.mark.parametrize(
    ("dates", "years"),
    [
        ({"StudyDate": "20230301", "AcquisitionDate": "20250301"}, 3.0),
        ({"AcquisitionDate": "20240301", "ContentDate": "20250301"}, 4.0),
        ({"ContentDate": "20250301", "SeriesDate": "20220301"}, 5.0),
        ({"SeriesDate": "20220301"}, 2.0),
        ({"StudyDate": "garbage", "AcquisitionDate": "20240301"}, 4.0),
    ],
)
def test_the_reference_date_is_study_then_acquisition_then_content_then_series(dates, years):
    facts = read_header(_header(PatientBirthDate="20200301", **dates))

    assert facts.age_years == pytest.approx(years) and facts.age_source == "dates"


def test_no_age_without_patient_age_or_a_usable_pair_of_dates():
    for elements in ({}, {"PatientBirthDate": "20200301"}, {"StudyDate": "20240301"}):
        facts = read_header(_header(**elements))
        assert facts.age_years is None and facts.age_source == ""


def test_patient_age_wins_over_dates_that_disagree():
    ds = _header(PatientAge="004Y", PatientBirthDate="19600101", StudyDate="20240101")

    assert read_header(ds).age_years == 4.0


def test_view_code_and_species_code_sequences_are_read_by_meaning():
    ds = _header(
        ViewCodeSequence=Sequence([_code_item("lateral", "399073003")]),
        PatientSpeciesCodeSequence=Sequence([_code_item("Canis lupus familiaris", "448771007")]),
    )

    facts = read_header(ds)

    assert facts.view_code == "lateral" and facts.species == "Canis lupus familiaris"


def test_a_code_item_without_meaning_falls_back_to_its_code_value():
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "337915000", "SCT"

    assert read_header(_header(PatientSpeciesCodeSequence=Sequence([item]))).species == (
        "337915000"
    )


def test_empty_sequences_and_multi_valued_strings_do_not_raise():
    ds = _header(
        ViewCodeSequence=Sequence([]),
        PatientSpeciesCodeSequence=Sequence([Dataset()]),
        BodyPartExamined=["CHEST", "ABDOMEN"],
    )

    facts = read_header(ds)

    assert facts.view_code == "" and facts.species == ""
    assert facts.body_part == "CHEST\\ABDOMEN"


# The header fields read_header looks at, in tag order, with their explicit VRs.
_FUZZED_ELEMENTS = [
    (0x0008, 0x0020, b"DA"),  # StudyDate
    (0x0008, 0x0022, b"DA"),  # AcquisitionDate
    (0x0008, 0x0060, b"CS"),  # Modality
    (0x0008, 0x1030, b"LO"),  # StudyDescription
    (0x0008, 0x103E, b"LO"),  # SeriesDescription
    (0x0010, 0x0030, b"DA"),  # PatientBirthDate
    (0x0010, 0x1010, b"AS"),  # PatientAge
    (0x0010, 0x2201, b"LO"),  # PatientSpeciesDescription
    (0x0018, 0x0015, b"CS"),  # BodyPartExamined
    (0x0018, 0x5101, b"CS"),  # ViewPosition
]


def _fuzzed_file(rng: random.Random) -> bytes:
    """A Part 10 file whose header strings are random bytes (pydicom refuses to write them,
    so the elements are encoded by hand: tag, VR, 16-bit length, value)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    for group, element, vr in _FUZZED_ELEMENTS:
        value = rng.randbytes(rng.randrange(0, 40, 2))
        buffer.write(struct.pack("<HH2sH", group, element, vr, len(value)) + value)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom describes each invalid value
def test_read_header_never_raises_on_fuzzed_values():
    import pydicom

    rng = random.Random(11)
    for _ in range(200):
        ds = pydicom.dcmread(io.BytesIO(_fuzzed_file(rng)))

        facts = read_header(ds)

        assert isinstance(facts, HeaderFacts)
        assert facts.age_years is None or 0.0 <= facts.age_years <= 130.0
        # Whatever the header held, the rules give a known reason or none, never an error.
        refusal = header_refusal(facts, CHILDREN)
        assert refusal is None or refusal[0] in REFUSAL_REASONS


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_read_header_never_raises_on_odd_python_values():
    odd: list[object] = [b"\xff\xfe\x00", "\x00\x00", "ü" * 70, 12345, 3.5, ["A", "B"], ""]
    for value in odd:
        ds = Dataset()
        for keyword in ("Modality", "PatientAge", "StudyDescription", "PatientBirthDate"):
            try:
                setattr(ds, keyword, value)
            except (TypeError, ValueError):
                continue

        assert isinstance(read_header(ds), HeaderFacts)


def test_read_header_survives_elements_that_fail_to_convert():
    class Exploding(Dataset):
        def get(self, *args, **kwargs):
            raise ValueError("corrupt value")

    assert read_header(Exploding()) == HeaderFacts()


def test_real_cr_chest_header_from_pydicom_data():
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data would have to download RG1_UNCR.dcm")

    facts = read_header(dcmread(path, stop_before_pixels=True))

    # The RG in pydicom-data's file names means radiograph; the Modality is CR.
    assert (facts.modality, facts.body_part, facts.view_position) == ("CR", "CHEST", "PA")
    assert facts.age_source == "dates"  # no PatientAge; born 1940-03-05, studied 2004-08-26
    assert facts.age_years == pytest.approx(64.48, abs=0.01)


# --- Population -----------------------------------------------------------------------------


def test_default_population_is_children_from_the_first_to_before_the_sixth_birthday():
    population = Population()

    assert population.describe() == "children aged 1 to 5 years"
    assert not population.contains(0.999)
    assert population.contains(1.0) and population.contains(5.999)
    assert not population.contains(6.0)


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ({}, Population(1.0, 6.0)),
        ({"intended_population": None}, Population(1.0, 6.0)),
        ({"intended_population": {}}, Population(1.0, 6.0)),
        ({"intended_population": {"min_age_years": 2}}, Population(2.0, 6.0)),
        ({"intended_population": {"max_age_years": "12"}}, Population(1.0, 12.0)),
        ({"intended_population": {"min_age_years": 0, "max_age_years": 18}}, Population(0, 18)),
    ],
)
def test_population_from_card_reads_its_bounds_with_defaults(card, expected):
    assert Population.from_card(card) == expected


@pytest.mark.parametrize(
    "section",
    [
        {"min_age_years": 6, "max_age_years": 1},
        {"min_age_years": 3, "max_age_years": 3},
        {"min_age_years": -1},
        {"max_age_years": "old"},
        {"max_age_years": float("inf")},
        ["min_age_years", 1],
    ],
)
def test_population_from_card_rejects_a_nonsense_population(section):
    with pytest.raises(ValueError):
        Population.from_card({"intended_population": section})


@pytest.mark.parametrize(
    ("population", "words"),
    [
        (Population(1, 6), "children aged 1 to 5 years"),
        (Population(2, 12), "children aged 2 to 11 years"),
        (Population(0, 6), "children under 6 years"),
        (Population(0.5, 6), "children aged 0.5 to under 6 years"),
        (Population(18, 100), "patients aged 18 to 99 years"),
    ],
)
def test_population_describe_says_the_range_as_people_say_it(population, words):
    assert population.describe() == words


# --- Rules: modality ------------------------------------------------------------------------


def test_an_in_scope_chest_radiograph_of_a_child_passes_every_rule():
    assert header_refusal(IN_SCOPE, CHILDREN) is None


@pytest.mark.parametrize("modality", ["CR", "DX", "RG", ""])
def test_radiograph_modalities_and_a_missing_modality_pass(modality):
    assert header_refusal(_facts(modality=modality), CHILDREN) is None


@pytest.mark.parametrize(
    ("modality", "words"),
    [
        ("CT", "a CT image (Modality CT)"),
        ("MR", "an MR image (Modality MR)"),
        ("US", "an ultrasound image (Modality US)"),
        ("MG", "a mammogram (Modality MG)"),
        ("XA", "an angiography image (Modality XA)"),
        ("NM", "a nuclear medicine image (Modality NM)"),
        ("XC", "a photograph (Modality XC)"),
        ("ZZ", "not a radiograph (Modality ZZ)"),
    ],
)
def test_other_modalities_are_not_chest_radiographs(modality, words):
    refusal = header_refusal(_facts(modality=modality), CHILDREN)

    assert refusal == (
        "not_chest_radiograph",
        f"The DICOM file is {words}; ChestNet analyses chest radiographs (CR or DX).",
    )


@pytest.mark.parametrize("modality", ["SC", "OT"])
@pytest.mark.parametrize(
    "mention",
    [
        {"body_part": "CHEST"},
        {"body_part": "thorax"},
        {"body_part": "", "study_description": "Torax PA"},
        {"body_part": "", "series_description": "CXR portable"},
        {"body_part": "", "study_description": "Lungs, 2 views"},
        {"body_part": "", "series_description": "RÖ THORAX p.a."},
    ],
)
def test_secondary_captures_pass_when_the_header_says_chest(modality, mention):
    assert header_refusal(_facts(modality=modality, **mention), CHILDREN) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"body_part": ""},
        {"body_part": "", "study_description": "Scanned film"},
        {"body_part": "", "series_description": "Thoracic spine"},  # THORACIC is not THORAX
        {"body_part": "", "study_description": "Manchester referral"},  # not a word start
    ],
)
def test_secondary_captures_that_do_not_say_chest_are_refused(fields):
    code, message = header_refusal(_facts(modality="SC", **fields), CHILDREN)

    assert code == "not_chest_radiograph"
    assert message == (
        "The DICOM file is a secondary capture (Modality SC) and does not say it shows the "
        "chest; ChestNet analyses chest radiographs (CR or DX)."
    )


# --- Rules: body part -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body_part",
    ["CHEST", "THORAX", "TORAX", "LUNG", "chest", "CHEST_PA", "PED CHEST", "THORAX AP", ""],
)
def test_chest_body_parts_and_a_missing_one_pass(body_part):
    assert header_refusal(_facts(body_part=body_part), CHILDREN) is None


@pytest.mark.parametrize(
    "body_part",
    [
        "ABDOMEN",
        "KNEE",
        "SKULL",
        "HAND",
        "EXTREMITY",
        "BREAST",  # not the chest wall film the AI learnt
        "TSPINE",
        # Wider than the chest: laid out and exposed differently from a chest film.
        "CHEST_TO_PELVIS",
        "CHESTABDOMEN",
        "CHESTABDPELVIS",
        "CHEST ABDOMEN",
        "WHOLEBODY",
    ],
)
def test_other_or_wider_body_parts_are_not_chest_radiographs(body_part):
    code, message = header_refusal(_facts(body_part=body_part), CHILDREN)

    assert code == "not_chest_radiograph"
    assert message.startswith(f"The DICOM file says the body part examined is {body_part}; ")


def test_a_body_part_with_odd_characters_is_shown_as_code_characters_only():
    _, message = header_refusal(_facts(body_part="KNEE<script>\x00"), CHILDREN)

    assert "body part examined is KNEESCRIPT;" in message


# --- Rules: view ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "view",
    [
        {"view_position": "LL"},
        {"view_position": "RL"},
        {"view_position": "LAT"},
        {"view_position": "LATERAL"},
        {"view_position": "", "view_code": "lateral"},
        {"view_position": "", "view_code": "left lateral"},
        {"view_position": "", "view_code": "Right Lateral"},
    ],
)
def test_lateral_views_are_outside_intended_use(view):
    code, message = header_refusal(_facts(**view), CHILDREN)

    assert code == "outside_intended_use"
    assert message.startswith("The DICOM file is a lateral view")
    assert message.endswith("; the AI was validated on frontal views.")


def test_the_lateral_message_names_the_view_position_code():
    _, message = header_refusal(_facts(view_position="LL"), CHILDREN)

    assert message == (
        "The DICOM file is a lateral view (View Position LL); the AI was validated on "
        "frontal views."
    )


@pytest.mark.parametrize(
    "view",
    [{"view_position": "LLO"}, {"view_position": "RLO"}, {"view_code": "left anterior oblique"}],
)
def test_oblique_views_are_outside_intended_use_too(view):
    code, message = header_refusal(_facts(**view), CHILDREN)

    assert code == "outside_intended_use" and "an oblique view" in message


@pytest.mark.parametrize(
    "view",
    [
        {"view_position": "PA"},
        {"view_position": "AP"},
        {"view_position": ""},
        # Decubitus: a frontal beam with the child lying on one side.
        {"view_position": "LLD"},
        {"view_position": "RLD"},
        {"view_position": "", "view_code": "left lateral decubitus"},
        {"view_position": "", "view_code": "postero-anterior"},
        {"view_position": "", "view_code": "latero-medial"},
    ],
)
def test_frontal_and_decubitus_views_pass(view):
    assert header_refusal(_facts(**view), CHILDREN) is None


# --- Rules: species -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "species",
    ["", "Homo sapiens", "HOMO SAPIENS", "human", "Human", "337915000", "L-85B00"],
)
def test_human_or_unstated_species_pass(species):
    assert header_refusal(_facts(species=species), CHILDREN) is None


@pytest.mark.parametrize(
    "species", ["Canis lupus familiaris", "Felis catus", "canine", "448771007", "non-human"]
)
def test_other_species_are_outside_intended_use(species):
    refusal = header_refusal(_facts(species=species), CHILDREN)

    assert refusal == (
        "outside_intended_use",
        "The DICOM file describes a patient who is not human (Patient Species); "
        "the AI was validated on children aged 1 to 5 years.",
    )


# --- Rules: age -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "words"),
    [
        (66.4, "66 years old"),
        (6.0, "6 years old"),
        (18.0, "18 years old"),
        (0.5, "6 months old"),
        (1 / 12, "1 month old"),
        (0.99, "11 months old"),
        (10 / 365.25, "10 days old"),
        (1 / 365.25, "1 day old"),
        (0.0, "a newborn"),
    ],
)
def test_ages_outside_the_population_are_refused_naming_the_population(age, words):
    expected = (
        "outside_intended_use",
        f"The patient is {words}; the AI was validated on children aged 1 to 5 years.",
    )

    assert header_refusal(_facts(age_years=age), CHILDREN) == expected
    assert age_refusal(age, CHILDREN) == expected


@pytest.mark.parametrize("age", [1.0, 1.5, 3.0, 5.0, 5.999])
def test_ages_inside_the_population_pass(age):
    assert header_refusal(_facts(age_years=age), CHILDREN) is None
    assert age_refusal(age, CHILDREN) is None


def test_an_unknown_age_passes():
    assert header_refusal(_facts(age_years=None), CHILDREN) is None
    assert age_refusal(None, CHILDREN) is None


def test_the_age_rule_follows_the_cards_population():
    card = {"intended_population": {"min_age_years": 12, "max_age_years": 18}}
    teenagers = Population.from_card(card)

    assert age_refusal(13.0, teenagers) is None
    assert age_refusal(5.0, teenagers) == (
        "outside_intended_use",
        "The patient is 5 years old; the AI was validated on children aged 12 to 17 years.",
    )


def test_rules_run_in_order_modality_body_part_view_species_age():
    everything_wrong = HeaderFacts(
        modality="CT",
        body_part="KNEE",
        view_position="LL",
        species="Felis catus",
        age_years=66.0,
    )
    expected_order = ["Modality CT", "body part", "lateral", "not human", "66 years"]

    seen = []
    facts = everything_wrong
    for fix in (
        {"modality": "DX"},
        {"body_part": "CHEST"},
        {"view_position": "PA"},
        {"species": ""},
        {"age_years": 3.0},
    ):
        seen.append(header_refusal(facts, CHILDREN)[1])
        facts = HeaderFacts(**{**facts.__dict__, **fix})

    assert all(part in message for part, message in zip(expected_order, seen, strict=True))
    assert header_refusal(facts, CHILDREN) is None


def test_every_refusal_is_a_valid_outcome_and_carries_no_patient_identifiers():
    ds = _header(
        PatientName="Doe^Jane",
        PatientID="MRN-0048213",
        AccessionNumber="ACC991",
        StudyDescription="Jane Doe chest",
        SeriesDescription="MRN-0048213 lateral",
        Modality="SC",
        BodyPartExamined="CHEST",
        ViewPosition="LL",
        PatientAge="045Y",
    )
    facts = read_header(ds)
    refusals = [
        header_refusal(facts, CHILDREN),
        header_refusal(HeaderFacts(**{**facts.__dict__, "view_position": "PA"}), CHILDREN),
        header_refusal(HeaderFacts(**{**facts.__dict__, "modality": "CT"}), CHILDREN),
    ]

    for code, message in refusals:
        Refusal(code, message)  # raises on an unknown reason code
        assert not re.search(r"Doe|Jane|MRN|0048213|ACC", message), message
