"""A real PACS for integration tests: Debian's Orthanc, started with a configuration of the
test's own (its ports, its storage folder, ChestNet as a known modality), stopped and
started again on the same ports and storage to play an outage."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from devtools.ports import free_ports
from devtools.processes import stop_process

BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"


def available() -> bool:
    return Path(BINARY).exists()


class Orthanc:
    aet = "ORTHANC"

    def __init__(self, directory: Path, *, modalities: dict[str, list[Any]]) -> None:
        self.directory = directory
        self.dicom_port, self.http_port = free_ports(2)
        self.config = directory / "orthanc.json"
        self.config.write_text(
            json.dumps(
                {
                    "Name": "chestnet-test-pacs",
                    "StorageDirectory": str(directory / "storage"),
                    "IndexDirectory": str(directory / "storage"),
                    "DicomAet": self.aet,
                    "DicomPort": self.dicom_port,
                    "HttpPort": self.http_port,
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": False,
                    "DicomModalities": modalities,
                    "DicomCheckCalledAet": True,
                    "Plugins": [],
                    "StableAge": 1,
                }
            )
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30) -> None:
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            [BINARY, str(self.config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited:\n{self.log()[-3000:]}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=15, group=True)
            self.process = None

    def log(self) -> str:
        path = self.directory / "orthanc.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return response.read()

    def post(self, path: str, body: bytes | str, *, timeout: float = 60) -> Any:
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def study_id(self, study_instance_uid: str) -> str | None:
        found = self.post("/tools/lookup", study_instance_uid)
        return next((item["ID"] for item in found if item["Type"] == "Study"), None)

    def series(self, study_instance_uid: str) -> list[dict[str, Any]]:
        """The study's series: Modality, SeriesDescription and instance ids of each."""
        study = self.study_id(study_instance_uid)
        if study is None:
            return []
        return [
            {
                "modality": series["MainDicomTags"].get("Modality", ""),
                "description": series["MainDicomTags"].get("SeriesDescription", ""),
                "instances": series["Instances"],
            }
            for series in self.get(f"/studies/{study}/series")
        ]
