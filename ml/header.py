"""What a DICOM header says about the patient and the image, and the rules that refuse a file
on those facts alone, before a pixel is scored.

Headers from the field are messy (free-text ages, vendor body-part codes, fuzzed test files),
so reading never raises: an unreadable value is an empty one. Refusal messages name codes
and ages only, never free text, which may carry patient identifiers. TensorFlow-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MAX_AGE_YEARS: Final = 130.0

# RG ("radiographic imaging, conventional film/screen") is a DICOM defined term for plain
# films. pydicom-data's RG1/RG2/RG3 files are named for radiographs but say Modality CR.
RADIOGRAPH_MODALITIES: Final = frozenset({"CR", "DX", "RG"})
# Scans of films and screenshots: acceptable only when the header says they show the chest.
CAPTURE_MODALITIES: Final = frozenset({"SC", "OT"})
_MODALITY_NAMES: Final = {
    "CT": "a CT image",
    "MR": "an MR image",
    "US": "an ultrasound image",
    "MG": "a mammogram",
    "NM": "a nuclear medicine image",
    "PT": "a PET image",
    "XA": "an angiography image",
    "RF": "a fluoroscopy image",
    "IO": "an intra-oral dental radiograph",
    "PX": "a panoramic dental radiograph",
    "DG": "a diaphanography image",
    "ES": "an endoscopy image",
    "XC": "a photograph",
    "OP": "an ophthalmic photograph",
    "SM": "a microscopy slide image",
    "DOC": "a document",
    "SC": "a secondary capture",
    "OT": "an image of unspecified modality",
}
_WHAT_WE_READ: Final = "ChestNet analyses chest radiographs (CR or DX)."

# Words that name the chest in BodyPartExamined and descriptions: DICOM's CHEST and LUNG,
# and THORAX / TORAX as European vendors write them. A prefix match, so LUNGS and the
# German LUNGE count too; THORACIC (as in thoracic spine) does not.
_CHEST_MENTION: Final = re.compile(r"(?<![A-Z])(CHEST|THORAX|TORAX|CXR|LUNG)")
_CHEST_WORDS: Final = frozenset({"CHEST", "THORAX", "TORAX", "CXR", "LUNG", "LUNGS"})
# Words a vendor may add to a chest body part without widening it ("CHEST_PA", "PED THORAX").
# Anything else makes it a different or wider region: CHEST_TO_PELVIS, CHESTABDOMEN and
# WHOLEBODY are refused, because a film of chest and abdomen (a neonatal "babygram") is laid
# out and exposed differently from the chest films the AI was validated on.
_CHEST_QUALIFIERS: Final = frozenset(
    {"PA", "AP", "FRONTAL", "PED", "PEDS", "PEDIATRIC", "PAED", "PAEDIATRIC"}
    | {"XR", "CR", "DX", "X", "RAY", "XRAY", "PORTABLE", "ERECT", "UPRIGHT", "SUPINE"}
)

# ViewPosition terms for projections that are not frontal. Lateral decubitus (RLD, LLD) is
# a frontal beam with the patient on their side, so it is not among them. Obliques are
# refused for the same reason as laterals: the AI only saw frontal projections.
_LATERAL_VIEWS: Final = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"})
_OBLIQUE_VIEWS: Final = frozenset({"LLO", "RLO", "OBL", "OBLIQUE"})

# Homo sapiens as free text, as SNOMED CT and as the older SNOMED-RT code.
_HUMAN: Final = frozenset({"HUMAN", "HOMO SAPIENS", "337915000", "L-85B00"})

# Reference dates for an age from the birth date, most specific to the study first.
_REFERENCE_DATES: Final = ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate")

_DAYS_PER_YEAR: Final = 365.25
_AGE_UNITS: Final[dict[str, float]] = {
    **dict.fromkeys(("Y", "YR", "YRS", "YEAR", "YEARS"), 1.0),
    **dict.fromkeys(("M", "MO", "MOS", "MON", "MTH", "MTHS", "MONTH", "MONTHS"), 1 / 12),
    **dict.fromkeys(("W", "WK", "WKS", "WEEK", "WEEKS"), 7 / _DAYS_PER_YEAR),
    **dict.fromkeys(("D", "DAY", "DAYS"), 1 / _DAYS_PER_YEAR),
}
_AGE_PART: Final = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Z]*)\.?\s*")
_DICOM_DATE: Final = re.compile(r"(\d{4})[.\-/]?(\d{2})[.\-/]?(\d{2})")
# TM "HHMMSS.FFFFFF" or a prefix of it, and the older "HH:MM:SS"; an offset "+HHMM".
_DICOM_TIME: Final = re.compile(r"(\d{2}):?(\d{2})?:?(\d{2})?(?:\.(\d{1,6}))?$")
_DICOM_OFFSET: Final = re.compile(r"([+-])(\d{2})(\d{2})$")


@dataclass(frozen=True)
class HeaderFacts:
    """The header fields the intended-use rules look at; "" or None where absent or odd."""

    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    # ViewCodeSequence's code meaning ("lateral"): DX files may code the view only there.
    view_code: str = ""
    study_description: str = ""
    series_description: str = ""
    species: str = ""
    age_years: float | None = None
    age_source: str = ""  # "PatientAge", "dates" or ""


@dataclass(frozen=True)
class Population:
    """The ages the AI was validated on; the upper bound is exclusive, so "one to five"
    runs from the first birthday to the day before the sixth."""

    min_age_years: float = 1.0
    max_age_years: float = 6.0

    def __post_init__(self) -> None:
        # Floats whatever the caller passed, so describe() can ask is_integer() of them.
        low, high = float(self.min_age_years), float(self.max_age_years)
        object.__setattr__(self, "min_age_years", low)
        object.__setattr__(self, "max_age_years", high)
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low < high):
            raise ValueError(f"Invalid intended population ages: {low} to under {high}.")

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Population:
        """The population of a model card; a card without one gets the defaults."""
        section = card.get("intended_population") or {}
        if not isinstance(section, Mapping):
            raise ValueError("The card's intended_population must be a mapping.")
        default = cls()
        return cls(
            min_age_years=float(section.get("min_age_years", default.min_age_years)),
            max_age_years=float(section.get("max_age_years", default.max_age_years)),
        )

    def contains(self, age_years: float) -> bool:
        return self.min_age_years <= age_years < self.max_age_years

    def describe(self) -> str:
        low, high = self.min_age_years, self.max_age_years
        who = "children" if high <= 18 else "patients"
        if low == 0:
            return f"{who} under {_number(high)} years"
        if low.is_integer() and high.is_integer():
            # Whole-year bounds read as people say them: "1 to 5" means up to 5 years 364 days.
            return f"{who} aged {_number(low)} to {_number(high - 1)} years"
        return f"{who} aged {_number(low)} to under {_number(high)} years"


# --- Reading --------------------------------------------------------------------------------


def read_header(ds: Dataset) -> HeaderFacts:
    """The intended-use facts of a pydicom Dataset. Never raises, whatever the values."""
    age, source = _age(ds)
    return HeaderFacts(
        modality=_code(element_text(ds, "Modality")),
        body_part=_code(element_text(ds, "BodyPartExamined")),
        view_position=_code(element_text(ds, "ViewPosition")),
        view_code=code_meaning(ds, "ViewCodeSequence"),
        study_description=element_text(ds, "StudyDescription"),
        series_description=element_text(ds, "SeriesDescription"),
        species=element_text(ds, "PatientSpeciesDescription")
        or code_meaning(ds, "PatientSpeciesCodeSequence"),
        age_years=age,
        age_source=source,
    )


def element_text(ds: Dataset, keyword: str) -> str:
    """An element's value as stripped text; "" when absent, a sequence, or undecodable."""
    try:
        value = ds.get(keyword)
    except Exception:  # pydicom converts raw values lazily: a corrupt one fails here
        return ""
    if value is None or _is_sequence(value):
        return ""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    elif _is_multi_value(value):
        value = "\\".join(str(item) for item in value)
    try:
        return str(value).replace("\x00", " ").strip()
    except Exception:  # a value class whose __str__ fails on corrupt bytes
        return ""


def code_meaning(ds: Dataset, keyword: str) -> str:
    """The first item's CodeMeaning (else CodeValue) of a code sequence, or ""."""
    try:
        sequence = ds.get(keyword)
        item = sequence[0] if _is_sequence(sequence) and len(sequence) else None
    except Exception:
        return ""
    if item is None:
        return ""
    return element_text(item, "CodeMeaning") or element_text(item, "CodeValue")


def _is_sequence(value: object) -> bool:
    from pydicom.sequence import Sequence

    return isinstance(value, Sequence)


def _is_multi_value(value: object) -> bool:
    from pydicom.multival import MultiValue

    return isinstance(value, MultiValue | list | tuple)


def _code(text: str) -> str:
    # Code strings (CS) are upper case by definition; some writers ignore that.
    return text.upper()


def _age(ds: Dataset) -> tuple[float | None, str]:
    age = parse_age(element_text(ds, "PatientAge"))
    if age is not None:
        return age, "PatientAge"
    birth = element_text(ds, "PatientBirthDate")
    for keyword in _REFERENCE_DATES:
        reference = element_text(ds, keyword)
        age = age_from_dates(birth, reference) if birth and reference else None
        if age is not None:
            return age, "dates"
    return None, ""


# --- Ages -----------------------------------------------------------------------------------


def parse_age(text: str) -> float | None:
    """An age in years from DICOM AS ("005Y", "018M", "012W", "200D") or the free text some
    systems write instead ("5", "5 years", "05yrs", "60 months", "4 Y 6 M", "1y6m", "5.5").

    A bare number means years. None when unparseable, ambiguous or outside 0-130 years.
    """
    cleaned = str(text).upper().replace("\x00", " ").replace(",", ".").strip()
    parts = _age_parts(cleaned.removesuffix("OLD").strip())
    if not parts or not _valid_units([unit for _, unit in parts]):
        return None
    years = sum(float(number) * _AGE_UNITS[unit or "Y"] for number, unit in parts)
    return years if math.isfinite(years) and 0.0 <= years <= MAX_AGE_YEARS else None


def _valid_units(units: list[str]) -> bool:
    # A bare number is years, but only on its own: "4 Y 6" could be six months or six years.
    if len(units) > 1 and "" in units:
        return False
    return len(set(units)) == len(units) and all(unit in _AGE_UNITS or not unit for unit in units)


def _age_parts(text: str) -> list[tuple[str, str]]:
    """(number, unit) pairs covering the whole text, or [] if anything else is in it."""
    parts, position = [], 0
    while position < len(text):
        match = _AGE_PART.match(text, position)
        if match is None:
            return []
        parts.append((match.group(1), match.group(2)))
        position = match.end()
    return parts


def age_from_dates(birth: str, reference: str) -> float | None:
    """Age in years on `reference` for someone born on `birth` (DICOM DA, YYYYMMDD).

    Whole years by the calendar, so a sixth birthday is exactly 6.0, plus the fraction of the
    current year of life. None for unparseable dates, a reference before the birth, or > 130.
    """
    born, on = _parse_date(birth), _parse_date(reference)
    if born is None or on is None or on < born:
        return None
    completed = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    last = _anniversary(born, born.year + completed)
    following = _anniversary(born, born.year + completed + 1)
    years = completed + (on - last).days / (following - last).days
    return years if years <= MAX_AGE_YEARS else None


def _parse_date(text: str) -> date | None:
    # YYYY.MM.DD is the old ACR-NEMA form, still written by some modalities.
    match = _DICOM_DATE.fullmatch(str(text).strip())
    if match is None:
        return None
    try:
        return date(*(int(group) for group in match.groups()))
    except ValueError:
        return None


def _anniversary(born: date, year: int) -> date:
    try:
        return born.replace(year=year)
    except ValueError:  # 29 February in a common year: the birthday falls on 1 March
        return date(year, 3, 1)


def study_datetime(ds: Dataset, local_zone: tzinfo) -> datetime | None:
    """StudyDate and StudyTime (DA "YYYYMMDD", TM "HHMMSS.FFFFFF" or a prefix of it; the
    older "YYYY.MM.DD" and "HH:MM:SS" too) as an aware time: in TimezoneOffsetFromUTC when
    the header gives it, else in `local_zone` (a modality stamps its local time: the
    site's). None without a valid date; midnight without a time."""
    day = _parse_date(element_text(ds, "StudyDate"))
    clock = _time_of_day(element_text(ds, "StudyTime"))
    if day is None or clock is None:
        return None
    return datetime.combine(day, clock, tzinfo=_offset_zone(ds) or local_zone)


def _time_of_day(text: str) -> time | None:
    """A TM value; midnight when there is none (or it is not one), None when it names an
    impossible time (hour 25)."""
    match = _DICOM_TIME.match(text)
    if match is None:
        return time()
    hour, minute, second, fraction = match.groups()
    try:
        return time(
            int(hour), int(minute or 0), int(second or 0), int((fraction or "0").ljust(6, "0"))
        )
    except ValueError:
        return None


def _offset_zone(ds: Dataset) -> tzinfo | None:
    offset = _DICOM_OFFSET.match(element_text(ds, "TimezoneOffsetFromUTC"))
    if offset is None:
        return None
    sign, hours, minutes = offset.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) > 59:
        return None  # not an offset of this planet (-1200 to +1400): as if absent
    return timezone(-delta if sign == "-" else delta)


# --- Rules ----------------------------------------------------------------------------------


def header_refusal(facts: HeaderFacts, population: Population) -> tuple[str, str] | None:
    """(reason code, plain message) when the header alone puts the file outside what the AI
    was made for; None when it does not. Rules run in the order a reader would ask."""
    for refusal in (
        _modality_refusal(facts),
        _body_part_refusal(facts),
        _view_refusal(facts),
        _species_refusal(facts, population),
    ):
        if refusal is not None:
            return refusal
    return age_refusal(facts.age_years, population)


def age_refusal(age_years: float | None, population: Population) -> tuple[str, str] | None:
    """The age rule alone, also for an age typed into a form; an unknown age passes."""
    if age_years is None or population.contains(age_years):
        return None
    return (
        "outside_intended_use",
        f"The patient is {_age_words(age_years)}; the AI was validated on {population.describe()}.",
    )


def _modality_refusal(facts: HeaderFacts) -> tuple[str, str] | None:
    modality = facts.modality
    if not modality or modality in RADIOGRAPH_MODALITIES:
        return None
    name = _MODALITY_NAMES.get(modality, "not a radiograph")
    shown = f"{name} (Modality {_printable(modality)})"
    if modality not in CAPTURE_MODALITIES:
        return "not_chest_radiograph", f"The DICOM file is {shown}; {_WHAT_WE_READ}"
    if _mentions_chest(facts):
        return None
    return (
        "not_chest_radiograph",
        f"The DICOM file is {shown} and does not say it shows the chest; {_WHAT_WE_READ}",
    )


def _mentions_chest(facts: HeaderFacts) -> bool:
    fields = (facts.body_part, facts.study_description, facts.series_description)
    return any(_CHEST_MENTION.search(field.upper()) for field in fields)


def _body_part_refusal(facts: HeaderFacts) -> tuple[str, str] | None:
    if not facts.body_part or _is_chest_only(facts.body_part):
        return None
    return (
        "not_chest_radiograph",
        f"The DICOM file says the body part examined is {_printable(facts.body_part)}; "
        f"{_WHAT_WE_READ}",
    )


def _is_chest_only(body_part: str) -> bool:
    words = set(re.findall(r"[A-Z]+", body_part.upper()))
    return bool(words & _CHEST_WORDS) and words <= _CHEST_WORDS | _CHEST_QUALIFIERS


def _view_refusal(facts: HeaderFacts) -> tuple[str, str] | None:
    kind = _view_kind(facts)
    if kind is None:
        return None
    source = f" (View Position {_printable(facts.view_position)})" if facts.view_position else ""
    return (
        "outside_intended_use",
        f"The DICOM file is {kind} view{source}; the AI was validated on frontal views.",
    )


def _view_kind(facts: HeaderFacts) -> str | None:
    words = set(re.findall(r"[A-Z]+", f"{facts.view_position} {facts.view_code}".upper()))
    if words & _LATERAL_VIEWS and "DECUBITUS" not in words:
        return "a lateral"
    if words & _OBLIQUE_VIEWS:
        return "an oblique"
    return None


def _species_refusal(facts: HeaderFacts, population: Population) -> tuple[str, str] | None:
    species = " ".join(facts.species.upper().split())
    if not species or species in _HUMAN or "HOMO SAPIENS" in species:
        return None
    return (
        "outside_intended_use",
        "The DICOM file describes a patient who is not human (Patient Species); "
        f"the AI was validated on {population.describe()}.",
    )


def _age_words(years: float) -> str:
    if years >= 1:
        return _plural(int(years), "year") + " old"
    if years * 12 >= 1:
        return _plural(int(years * 12), "month") + " old"
    days = int(years * _DAYS_PER_YEAR)
    return _plural(days, "day") + " old" if days else "a newborn"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def _number(value: float) -> str:
    return f"{value:g}"


def _printable(code: str) -> str:
    # Only code characters reach a message: a fuzzed header cannot inject text into it.
    return re.sub(r"[^A-Z0-9_ ]", "", code.upper())[:16].strip() or "unrecognised"
