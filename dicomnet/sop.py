"""What the DICOM listener and STOW-RS accept (projection radiography and secondary capture
in the common transfer syntaxes) and where findings are sent (`CHESTNET_PACS`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pydicom import uid

ACCEPTED_SOP_CLASSES: Final = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
}

TRANSFER_SYNTAXES: Final = [
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
]


# Statuses a store answers with (PS3.4 Annex B; STOW-RS's FailureReason uses the same).
SUCCESS: Final = 0x0000
PROCESSING_FAILURE: Final = 0x0110
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122
OUT_OF_RESOURCES: Final = 0xA700
STUDY_MISMATCH: Final = 0xA900  # STOW-RS: the instance is of another study than the URL's
CANNOT_UNDERSTAND: Final = 0xC000


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def destination_parse(text: str) -> Destination | None:
    """ "AET@host:port" (settings check the form); empty: no destination."""
    if not text:
        return None
    ae_title, _, address = text.partition("@")
    host, _, port = address.rpartition(":")
    return Destination(ae_title=ae_title, host=host, port=int(port))
