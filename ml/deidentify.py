"""De-identification of DICOM files that leave the clinical record: DICOM PS3.15 Annex E,
the Basic Application Level Confidentiality Profile (Table E.1-1, "Basic Prof." column).

The attribute table and the engine that walks it are dicomanonymizer's (KitwareMedical,
table edition 2026c); this module chooses the action for each of the table's codes where
the library's default does not suit a training dataset that deduplicates by content:

- U: a UID becomes a UUID-derived `2.25.` UID from a keyed hash of (salt, UID), so one
  input UID maps to one output UID in every process and images of a study stay one study
  (the library draws random UIDs and keeps them in a module-level dict). A UID made here
  carries keyed check bits and is kept as it is, so de-identifying twice changes nothing.
- X removes the attribute (the library writes 0001-01-01 into a removed date).
- Z writes a zero-length value (the library writes dummy dates, which the header's age
  rules would read as a newborn's).
- D writes the library's dummy for the VR; inside a replaced sequence UIDs get U.
- Sequences kept by the profile (not listed, or X/Z/U*) are cleaned item by item with the
  same rules ("K: cleaned for sequences").
- Private attributes, curves (50xx) and whole overlay groups (60xx, whose data the profile
  removes) are removed; the 128-byte preamble, which some writers fill with a TIFF header,
  is zeroed; the file meta is rebuilt, so MediaStorageSOPInstanceUID is the new SOP
  Instance UID.

Pixel data is never decoded: its bytes pass through unchanged. Django- and TensorFlow-free.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ml.preprocessing import UnsupportedImage

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

PROFILE_TABLE: Final = "dicomfields_2026c"
METHOD: Final = "DICOM PS3.15 Basic Application Confidentiality Profile"
METHOD_CODE: Final = ("113100", "DCM", "Basic Application Confidentiality Profile")
IMPLEMENTATION_VERSION: Final = "CHESTNET_DEID_1"

_UUID_ROOT: Final = "2.25."
_UUID_DIGITS: Final = re.compile(r"[1-9][0-9]{0,38}")
_ID_BYTES: Final = 10  # the keyed hash of the source UID (74 bits after the UUID's own)
_CHECK_BYTES: Final = 6  # the keyed check that this module made the UID
_REMOVED_GROUPS: Final = (0x5000, 0x6000)  # curves and overlays: groups 50xx and 60xx
# VRs the library has a dummy for; anything else inside a D sequence is removed instead.
_DUMMY_VRS: Final = frozenset(
    "AE AS CS DA DS DT FD FL IS LO LT OB PN SH SL SS ST TM UC UL UN UR US UT".split()
)

Rule = Callable[["Dataset", tuple[int, int]], None]


class DeidentificationError(UnsupportedImage):
    """A DICOM file that cannot be turned into a valid de-identified Part 10 file."""


def deidentify_dicom(data: bytes, *, salt: str) -> bytes:
    """The file with the Basic Profile applied, as a Part 10 file pydicom re-reads. The
    same bytes and salt always give the same result, and an output given back returns
    unchanged. Raises DeidentificationError for a file it cannot read or write."""
    try:
        ds = _read(data)
        _Profile(salt).apply(ds)
        _mark(ds)
        return _write(ds, data, salt)
    except DeidentificationError:
        raise
    except Exception as exc:  # pydicom parses lazily: a corrupt element fails anywhere
        raise DeidentificationError(
            "The DICOM file is malformed and cannot be de-identified."
        ) from exc


def is_deidentified(data: bytes) -> bool:
    """Whether the header says the Basic Profile was applied (Patient Identity Removed YES
    and the 113100 method code): what the file claims, not a proof."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        removed = str(ds.get("PatientIdentityRemoved", "")).upper() == "YES"
        return removed and any(
            _is_method_code(item) for item in _items(ds, "DeidentificationMethodCodeSequence")
        )
    except Exception:
        return False


# --- UIDs ---------------------------------------------------------------------------------


class _Uids:
    """Keyed, deterministic UID replacement that recognises its own output."""

    def __init__(self, salt: str):
        self._key = salt.encode()

    def __call__(self, uid: str) -> str:
        uid = str(uid).strip("\x00 ")
        if not uid or self.made_here(uid):
            return uid
        ident = bytearray(self._mac(b"uid\x00" + uid.encode())[:_ID_BYTES])
        ident[6] = (ident[6] & 0x0F) | 0x80  # UUID version 8: application-defined
        ident[8] = (ident[8] & 0x3F) | 0x80  # the RFC 4122 variant
        raw = bytes(ident) + self._check(bytes(ident))
        return _UUID_ROOT + str(int.from_bytes(raw, "big"))

    def made_here(self, uid: str) -> bool:
        digits = uid.removeprefix(_UUID_ROOT)
        if digits == uid or not _UUID_DIGITS.fullmatch(digits) or int(digits) >> 128:
            return False
        raw = int(digits).to_bytes(16, "big")
        return hmac.compare_digest(raw[_ID_BYTES:], self._check(raw[:_ID_BYTES]))

    def _check(self, ident: bytes) -> bytes:
        return self._mac(b"own\x00" + ident)[:_CHECK_BYTES]

    def _mac(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()


# --- The profile --------------------------------------------------------------------------


@functools.cache
def _table() -> dict[str, list[tuple[int, ...]]]:
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    return dicom_anonymization_database_selector(PROFILE_TABLE)


class _Profile:
    """The table's actions bound to one salt; `apply` cleans a dataset in place."""

    def __init__(self, salt: str):
        self.uid = _Uids(salt)
        # The library's own resolution of the combined codes (Z/D, X/D and X/Z/D replace,
        # X/Z empties), so that Type 1 and Type 2 attributes stay present for any IOD.
        by_code: dict[str, Rule] = {
            "D_TAGS": self._dummy,
            "Z_TAGS": _empty,
            "X_TAGS": _remove,
            "U_TAGS": self._replace_uid,
            "Z_D_TAGS": self._dummy,
            "X_Z_TAGS": _empty,
            "X_D_TAGS": self._dummy,
            "X_Z_D_TAGS": self._dummy,
            "X_Z_U_STAR_TAGS": self._references,
        }
        table = _table()
        self.rules = {
            tuple(tag): rule
            for code, rule in by_code.items()
            for tag in table[code]
            if not _whole_group_removed(tag)
        }
        self.cleaned_inside = {tag for tag, rule in self.rules.items() if rule == self._references}

    def apply(self, ds: Dataset) -> None:
        from dicomanonymizer.simpledicomanonymizer import anonymize_dataset

        anonymize_dataset(ds, base_rules_gen=lambda: dict(self.rules), delete_private_tags=True)
        _drop_groups(ds)
        for element in list(ds):
            key = (element.tag.group, element.tag.element)
            if element.VR == "SQ" and (key not in self.rules or key in self.cleaned_inside):
                for item in element.value:
                    self.apply(item)

    def _dummy(self, ds: Dataset, tag: tuple[int, int]) -> None:
        element = ds.get(tag)
        if element is not None:
            self._dummy_element(ds, element)

    def _dummy_element(self, ds: Dataset, element: DataElement) -> None:
        from dicomanonymizer.simpledicomanonymizer import replace_element

        if element.VR == "SQ":
            for item in element.value:
                for inner in list(item):
                    self._dummy_element(item, inner)
        elif element.VR == "UI":
            self._map_uids(element)
        elif element.VR in _DUMMY_VRS:
            replace_element(element)
        else:
            del ds[element.tag]

    def _replace_uid(self, ds: Dataset, tag: tuple[int, int]) -> None:
        element = ds.get(tag)
        if element is None:
            return
        if element.VR == "UI":
            self._map_uids(element)
        else:  # unknown to the dictionary (UN): no UID to keep consistent, so remove it
            del ds[element.tag]

    def _references(self, ds: Dataset, tag: tuple[int, int]) -> None:
        """X/Z/U*: a sequence keeps its items, cleaned by `apply` (references get U)."""
        element = ds.get(tag)
        if element is None or element.VR == "SQ":
            return
        if element.VR == "UI":
            self._map_uids(element)
        else:
            _empty(ds, tag)

    def _map_uids(self, element: DataElement) -> None:
        value = element.value
        if not value:
            return
        if isinstance(value, str):
            element.value = self.uid(value)
        else:
            element.value = [self.uid(uid) for uid in value]


def _remove(ds: Dataset, tag: tuple[int, int]) -> None:
    if tag in ds:
        del ds[tag]


def _empty(ds: Dataset, tag: tuple[int, int]) -> None:
    from pydicom.sequence import Sequence

    element = ds.get(tag)
    if element is not None:
        element.value = Sequence() if element.VR == "SQ" else None


def _whole_group_removed(tag: tuple[int, ...]) -> bool:
    """A masked row (50xx,xxxx), (60xx,3000), (60xx,4000) that `_drop_groups` covers: one
    pass over the keys instead of a walk of the whole dataset per row."""
    return len(tag) == 4 and tag[0] & 0xFF00 in _REMOVED_GROUPS


def _drop_groups(ds: Dataset) -> None:
    """Curves and overlays whole (an overlay plane without its data breaks the IOD), and
    group lengths, which the removals above made wrong (retired outside the file meta)."""
    for tag in list(ds.keys()):
        if tag.group & 0xFF00 in _REMOVED_GROUPS or tag.element == 0x0000:
            del ds[tag]


# --- Reading, marking, writing ------------------------------------------------------------


def _read(data: bytes) -> Dataset:
    import pydicom

    # force: legacy files without preamble or file meta are DICOM too (ml.preprocessing).
    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "SOPClassUID" not in ds:
        raise DeidentificationError(
            "The DICOM file has no SOP Class UID; it cannot be de-identified."
        )
    return ds


def _mark(ds: Dataset) -> None:
    """PS3.15 E.1.1: say that, and how, the file was de-identified (appended, never twice)."""
    from pydicom.dataset import Dataset

    ds.PatientIdentityRemoved = "YES"
    methods = [str(m) for m in _values(ds.get("DeidentificationMethod"))]
    if METHOD not in methods:
        ds.DeidentificationMethod = [*methods, METHOD]
    codes = _items(ds, "DeidentificationMethodCodeSequence")
    if not any(_is_method_code(item) for item in codes):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = METHOD_CODE
        ds.DeidentificationMethodCodeSequence = [*codes, item]


def _write(ds: Dataset, data: bytes, salt: str) -> bytes:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    if "SOPInstanceUID" not in ds:  # named by content, so the same file gets the same UID
        ds.SOPInstanceUID = _Uids(salt)("sha256:" + hashlib.sha256(data).hexdigest())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(_transfer_syntax(ds))
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _transfer_syntax(ds: Dataset) -> str:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    given = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if given:
        return str(given)
    # A legacy file without file meta: the encoding it was parsed in (little endian).
    implicit = ds.original_encoding[0] is not False
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return [value] if isinstance(value, str) else list(value)


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    return list(ds.get(keyword) or [])


def _is_method_code(item: Dataset) -> bool:
    return (item.get("CodeValue"), item.get("CodingSchemeDesignator")) == METHOD_CODE[:2]
