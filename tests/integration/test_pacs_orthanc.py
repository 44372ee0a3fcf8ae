"""ChestNet in a hospital's network, against peers nobody here wrote: Debian's Orthanc (a
PACS) sends a study by C-STORE, dcmtk's storescu sends JPEG 2000 and JPEG-LS instances,
dicomweb-client stores one by STOW-RS; each becomes an analysed case, and Orthanc then holds
in the same study the AI's SR (read back with dcmdump) and the overlay; a PACS that is down
while a result is due gets it, once, when it is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from accounts import roles
from devtools import dicom_files
from devtools.ports import free_port
from devtools.workers import ROOT, start_worker, stop_worker
from diagnosis import services
from diagnosis.models import Case, Image
from dicomnet.models import OutboundObject, SendAttempt
from tests.support import factories, reviews
from tests.support.orthanc import Orthanc, available
from tests.support.stack import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not available() or not shutil.which("storescu"),
        reason="Orthanc and dcmtk are not installed (make dicom-tools installs them)",
    ),
]
ALLOWED = "ORTHANC,STORESCU"


@pytest.fixture(scope="module")
def listener_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, listener_port) -> Iterator[Orthanc]:
    server = Orthanc(
        tmp_path_factory.mktemp("orthanc"),
        modalities={"chestnet": ["CHESTNET", "127.0.0.1", listener_port]},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def network_env(worker_env, pacs) -> dict[str, str]:
    return {
        **worker_env,
        "CHESTNET_PACS": f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}",
        "CHESTNET_PACS_SWEEP_S": "1",
        "CHESTNET_PACS_RETRY_MAX_S": "2",
        "CHESTNET_DICOM_ALLOWED_AETS": ALLOWED,
    }


@pytest.fixture(scope="module")
def listener(network_env, listener_port, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """`manage.py dicom_listener`, as `make run` starts it, on the test database."""
    log = tmp_path_factory.mktemp("listener") / "listener.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_listener", "--port", str(listener_port)],
            cwd=ROOT,
            env={**os.environ, **network_env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for(lambda: _echo(listener_port) or process.poll() is not None, timeout=60)
    assert process.poll() is None, log.read_text()
    yield process
    stop_worker(process)


@pytest.fixture(scope="module")
def network_worker(network_env, tmp_path_factory) -> Iterator[subprocess.Popen]:
    """An inference worker with beat: the sweep sends findings to Orthanc every second."""
    folder = tmp_path_factory.mktemp("network-worker")
    process = start_worker(
        log=folder / "worker.log", env=network_env, beat_schedule=folder / "schedule"
    )
    yield process
    stop_worker(process)


def _echo(port: int, *, calling: str = "STORESCU") -> bool:
    done = subprocess.run(
        ["echoscu", "-aet", calling, "-aec", "CHESTNET", "127.0.0.1", str(port)],
        capture_output=True,
    )
    return done.returncode == 0


def _storescu(
    port: int, *paths: Path, calling: str = "STORESCU", propose: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    """dcmtk's storescu; `propose` adds compressed transfer syntaxes (-xv JPEG 2000 lossless,
    -xt JPEG-LS lossless) to the uncompressed ones it proposes by default."""
    command = ["storescu", *propose, "-aet", calling, "-aec", "CHESTNET", "127.0.0.1", str(port)]
    return subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)


def _analysed_case(study_uid: str, images: int = 1) -> Case | None:
    case = Case.objects.filter(study_instance_uid=study_uid).first()
    if case is None or case.status != Case.Status.AWAITING_REVIEW:
        return None
    finished = case.images.filter(status__in=[Image.Status.DONE, Image.Status.REFUSED])
    return case if finished.count() == images else None


def _chest(radiograph_set: Path, index: int = 0) -> Path:
    return sorted((radiograph_set / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))[index]


def _dcmdump(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "object.dcm"
    path.write_bytes(data)
    return subprocess.run(["dcmdump", str(path)], capture_output=True, text=True, check=True).stdout


def test_orthanc_sends_a_study_and_gets_the_sr_and_the_overlay_back_in_it(
    pacs, listener, network_worker, listener_port, radiograph_set, tmp_path
):
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(_chest(radiograph_set)))
    stored = pacs.post("/instances", dicom_files.to_bytes(ds))
    pacs.post("/modalities/chestnet/store", stored["ParentStudy"])

    case = wait_for(lambda: _analysed_case(ds.StudyInstanceUID), timeout=120)
    image = case.images.get()
    assert (case.source, case.source_ae) == (Case.Source.DIMSE, "ORTHANC")
    assert (case.patient_id, case.accession_number, case.age, case.sex) == (
        "PAT-0042",
        "ACC-1001",
        3,
        "F",
    )
    assert image.status == Image.Status.DONE and image.sop_instance_uid == ds.SOPInstanceUID

    findings = wait_for(lambda: _sent(pacs, ds.StudyInstanceUID, "AI findings"), timeout=60)
    dump = _dcmdump(pacs.get_bytes(f"/instances/{findings[0]}/file"), tmp_path)
    assert "tiny-test-0" in dump and ds.StudyInstanceUID in dump and ds.SOPInstanceUID in dump
    overlay = wait_for(lambda: _sent(pacs, ds.StudyInstanceUID, "heatmap"), timeout=60)
    tags = pacs.get(f"/instances/{overlay[0]}/simplified-tags")
    assert "not for diagnosis" in tags["SeriesDescription"] and tags["BurnedInAnnotation"] == "YES"
    assert tags["StudyInstanceUID"] == ds.StudyInstanceUID

    # The radiologist signs: the report goes into the same study too.
    radiologist = factories.UserFactory(username="pacs-radiologist", role=roles.RADIOLOGIST)
    services.case_claim(case=case, user=radiologist)
    reviews.submit(case, radiologist, report="RLL consolidation.")
    report = wait_for(lambda: _sent(pacs, ds.StudyInstanceUID, "report"), timeout=60)
    dump = _dcmdump(pacs.get_bytes(f"/instances/{report[0]}/file"), tmp_path)
    assert "RLL consolidation." in dump and "tiny-test-0" in dump


def _sent(pacs: Orthanc, study: str, described: str) -> list[str]:
    """Ids of the study's instances in series whose description mentions `described`."""
    return [
        instance
        for series in pacs.series(study)
        if described.lower() in series["description"].lower()
        for instance in series["instances"]
    ]


def test_storescu_sends_jpeg_2000_and_jpeg_ls_instances_and_each_is_analysed(
    listener, network_worker, listener_port, radiograph_set, tmp_path
):
    sent, propose = {}, {"j2k": ("-xv",), "jls": ("-xt",)}
    for index, syntax in enumerate(("j2k", "jls")):
        pixels = dicom_files.chest_pixels(_chest(radiograph_set, index + 1))
        ds = dicom_files.radiograph(pixels=pixels, syntax=syntax, accession=f"ACC-{syntax}")
        sent[syntax] = ds
        path = dicom_files.write(ds, tmp_path / f"{syntax}.dcm")
        done = _storescu(listener_port, path, propose=propose[syntax])
        assert done.returncode == 0, done.stderr
    for syntax, ds in sent.items():
        case = wait_for(lambda ds=ds: _analysed_case(ds.StudyInstanceUID), timeout=120)
        image = case.images.select_related("prediction").get()
        assert image.status == Image.Status.DONE, (syntax, image.refusal_message, image.error)
        assert image.prediction.model_version == "tiny-test-0"
        assert case.accession_number == f"ACC-{syntax}" and case.source_ae == "STORESCU"
    # Sent again: stored once.
    again = _storescu(listener_port, tmp_path / "j2k.dcm", propose=("-xv",))
    assert again.returncode == 0
    assert Image.objects.filter(sop_instance_uid=sent["j2k"].SOPInstanceUID).count() == 1


def test_dicomweb_client_stores_an_instance_by_stow_rs(live_server, network_worker, radiograph_set):
    from dicomweb_client.api import DICOMwebClient

    from devtools.users import token_for

    clinician = factories.UserFactory(username="stow-clinician", role=roles.CLINICIAN)
    token = token_for(clinician, client="dicomweb-client")
    client = DICOMwebClient(
        url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Token {token}"}
    )
    ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(_chest(radiograph_set, 3)))
    response = client.store_instances(datasets=[ds])
    stored = response.ReferencedSOPSequence
    assert [item.ReferencedSOPInstanceUID for item in stored] == [ds.SOPInstanceUID]
    case = wait_for(lambda: _analysed_case(ds.StudyInstanceUID), timeout=120)
    assert (case.source, case.owner) == (Case.Source.STOW, clinician)
    assert case.images.get().status == Image.Status.DONE


def test_a_pacs_that_was_down_gets_the_result_once_when_it_is_back(
    pacs, listener, network_worker, listener_port, tmp_path
):
    pacs.stop()
    try:
        ds = dicom_files.radiograph(pixels=dicom_files.chest_pixels(), accession="ACC-DOWN")
        done = _storescu(listener_port, dicom_files.write(ds, tmp_path / "down.dcm"))
        assert done.returncode == 0, done.stderr
        wait_for(lambda: _analysed_case(ds.StudyInstanceUID), timeout=120)
        outbound = OutboundObject.objects.filter(study_instance_uid=ds.StudyInstanceUID)
        # The findings and the overlay: each tried, and tried again, while the PACS is down.
        wait_for(
            lambda: len(_each(outbound)) == 2 and all(_failures(o) >= 2 for o in _each(outbound))
        )
    finally:
        pacs.start()
    wait_for(
        lambda: (
            _sent(pacs, ds.StudyInstanceUID, "AI findings")
            and _sent(pacs, ds.StudyInstanceUID, "heatmap")
        ),
        timeout=60,
    )
    wait_for(
        lambda: all(o.status == OutboundObject.Status.SENT for o in _each(outbound)), timeout=30
    )
    assert len(_sent(pacs, ds.StudyInstanceUID, "AI findings")) == 1
    assert len(_sent(pacs, ds.StudyInstanceUID, "heatmap")) == 1
    assert all(o.attempts >= 3 for o in _each(outbound))  # two failures, then the one that went


def _each(objects) -> list[OutboundObject]:
    """The rows as they are now (a queryset iterated once keeps what it read)."""
    return list(objects.all())


def _failures(outbound: OutboundObject) -> int:
    return SendAttempt.objects.filter(outbound=outbound, outcome=SendAttempt.Outcome.FAILED).count()


def test_a_ct_instance_and_an_unknown_calling_ae_are_refused(listener, listener_port, tmp_path):
    ct = dicom_files.radiograph(
        pixels=dicom_files.chest_pixels(side=64), sop_class=dicom_files.CT, modality="CT"
    )
    refused = _storescu(listener_port, dicom_files.write(ct, tmp_path / "ct.dcm"))
    assert refused.returncode != 0
    assert "presentation context" in (refused.stdout + refused.stderr).lower()
    dx = dicom_files.radiograph(pixels=dicom_files.chest_pixels(side=64))
    stranger = _storescu(
        listener_port, dicom_files.write(dx, tmp_path / "dx.dcm"), calling="STRANGER"
    )
    assert stranger.returncode != 0
    assert not _echo(listener_port, calling="STRANGER") and _echo(listener_port)
    assert not Case.objects.filter(
        study_instance_uid__in=[ct.StudyInstanceUID, dx.StudyInstanceUID]
    ).exists()


# One file per transfer syntax the listener accepts (tests/support/transfer_syntaxes.py),
# and how a modality proposes it: storescu's own switch, or Orthanc forwarding the file in
# its own syntax where storescu has none (JPEG lossless process 14).
ROUND_TRIP = {
    "explicit-le-mono2": ("-xe",),
    "implicit-le-mono1": ("-xi",),
    "deflated-explicit-le": ("-xd",),
    "explicit-be-signed": ("-xb",),
    "jpeg-baseline-8bit": ("-xy",),
    "jpeg-extended-12bit": ("-xx",),
    "jpeg-lossless": None,
    "jpeg-lossless-sv1-mono1": ("-xs",),
    "jpeg-ls-lossless-signed": ("-xt",),
    "jpeg-ls-near-lossless-cr": ("-xu",),
    "j2k-lossless": ("-xv",),
    "j2k-lossy-cr": ("-xw",),
    "rle-16bit": ("-xr",),
}


def test_every_accepted_transfer_syntax_goes_from_the_modality_to_a_signed_report_in_the_pacs(
    pacs, listener, network_worker, listener_port, tmp_path
):
    """Sent by a modality (storescu) or forwarded by the PACS, read, signed, and the AI's
    findings and the report back in the PACS in the same study, for every syntax."""
    import pydicom

    from dicomnet.sop import TRANSFER_SYNTAXES
    from tests.support import transfer_syntaxes

    if not transfer_syntaxes.DCMCJPEG:
        pytest.skip("dcmtk's dcmcjpeg is not installed")
    samples = {name: transfer_syntaxes.sample(name) for name in ROUND_TRIP}
    assert {sample.syntax for sample in samples.values()} == set(TRANSFER_SYNTAXES)
    studies = {}
    for name, sample in samples.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(sample.data)
        studies[name] = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
        if ROUND_TRIP[name] is None:
            stored = pacs.post("/instances", sample.data)
            pacs.post("/modalities/chestnet/store", stored["ParentStudy"])
        else:
            done = _storescu(listener_port, path, propose=ROUND_TRIP[name])
            assert done.returncode == 0, (name, done.stdout, done.stderr)
    radiologist = factories.UserFactory(username="round-trip", role=roles.RADIOLOGIST)
    for name, study in studies.items():
        case = wait_for(lambda study=study: _analysed_case(study), timeout=180)
        image = case.images.get()
        assert image.refusal_reason not in ("unreadable", "unsupported"), (
            name,
            image.refusal_message,
        )
        assert image.status in (Image.Status.DONE, Image.Status.REFUSED), (name, image.error)
        services.case_claim(case=case, user=radiologist)
        analysed = image.status == Image.Status.DONE
        services.review_submit(
            case=case,
            author=radiologist,
            agrees_with_ai=True if analysed else None,
            finding="normal",
            report=name,
        )
    for name, study in studies.items():
        wait_for(lambda study=study: _sent(pacs, study, "AI findings"), timeout=120)
        report = wait_for(lambda study=study: _sent(pacs, study, "report"), timeout=120)
        assert name in _dcmdump(pacs.get_bytes(f"/instances/{report[0]}/file"), tmp_path)
