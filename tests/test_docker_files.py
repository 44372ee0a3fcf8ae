"""docker/ agrees with the app it ships: services, commands, queues, env names and the image
contents are checked by reading the files, so Docker itself is not needed."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.http.request import validate_host

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
SAME_IMAGE = ("migrate", "web", "worker", "beat", "dicom-listener")
WORKERS = ("worker", "gpu-worker")
# Not Django settings: read by gunicorn, TensorFlow, Python or pip inside the image.
TOOL_ENV = {"WEB_CONCURRENCY", "TF_FORCE_GPU_ALLOW_GROWTH", "TF_CPP_MIN_LOG_LEVEL"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def settings_env_names() -> set[str]:
    source = (ROOT / "chestnet_site" / "settings.py").read_text()
    return set(
        re.findall(r'env_(?:str|bool|int|float|list|choice|path)\(\s*"([A-Z][A-Z0-9_]*)"', source)
    )


def dockerfile() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def dockerfile_env() -> dict[str, str]:
    pairs = [shlex.split(args) for op, args in dockerfile() if op == "ENV"]
    return dict(item.split("=", 1) for pair in pairs for item in pair)


def env_example_names() -> set[str]:
    """Set and commented-out names alike: a typo in an example is still a typo."""
    text = (DOCKER / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def project_apps() -> set[str]:
    """The apps of INSTALLED_APPS that are packages of this repository (registry, dicomnet…)."""
    names = {app.split(".")[0] for app in settings.INSTALLED_APPS}
    return {name for name in names if (ROOT / name / "__init__.py").is_file()}


def worker_queues(command: list[str]) -> list[str]:
    assert command[:4] == ["celery", "-A", "chestnet_site", "worker"], command
    return command[command.index("-Q") + 1].split(",")


def test_compose_has_every_role(services):
    roles = {"postgres", "redis", "migrate", "web", "worker", "beat", "dicom-listener"}
    assert roles | {"gpu-worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert all("healthcheck" in services[name] for name in ("postgres", "redis"))


def test_web_worker_and_beat_run_one_image(services):
    web = services["web"]
    for name in SAME_IMAGE:
        assert (services[name]["image"], services[name]["build"]) == (web["image"], web["build"])
    assert "command" not in web, "web runs the image's default command (gunicorn)"


def test_workers_consume_the_queue_inference_is_routed_to(services):
    queue = settings.CELERY_TASK_ROUTES["diagnosis.tasks.inference_run_task"]["queue"]
    for name in WORKERS:
        command = services[name]["command"]
        assert queue in worker_queues(command)
        # One child per worker: each child loads its own TensorFlow model.
        assert command[command.index("--concurrency") + 1] == "1"
        assert "--max-tasks-per-child" in command


def test_exactly_one_beat_and_an_always_on_worker_takes_its_tasks(services):
    commands = [service.get("command") or [] for service in services.values()]
    assert sum("beat" in command or "-B" in command for command in commands) == 1
    default_queue = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery")
    assert "profiles" not in services["worker"]
    assert default_queue in worker_queues(services["worker"]["command"])


def test_gpu_worker_swaps_tensorflow_for_the_same_release_line(services):
    gpu = services["gpu-worker"]
    pinned = re.search(r"^tensorflow-cpu==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    wanted = re.fullmatch(r"tensorflow\[and-cuda\]==(\S+)", gpu["build"]["args"]["TENSORFLOW"])
    assert pinned and wanted and pinned.group(1) == wanted.group(1)
    assert gpu["build"]["dockerfile"] == services["web"]["build"]["dockerfile"]
    assert gpu["image"] != services["web"]["image"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_web_waits_for_migrations_and_nothing_creates_demo_users(services):
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "migrate --noinput" in " ".join(services["migrate"]["command"])
    for name, service in services.items():
        assert "seed_demo_users" not in " ".join(service.get("command") or []), name


def test_nothing_starts_when_check_deploy_warns(services):
    """`migrate` runs first and web, workers and beat wait for it to succeed."""
    command = services["migrate"]["command"][-1]
    assert command.startswith("python manage.py check --deploy --fail-level WARNING &&")
    for name in ("web", "worker", "beat", "dicom-listener"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_web_and_workers_share_the_media_volume_at_media_root(services):
    media_root = f"{dockerfile_env()['CHESTNET_HOME']}/media"  # MEDIA_ROOT's default
    for name in ("web", "dicom-listener", *WORKERS):
        assert f"media:{media_root}" in services[name]["volumes"], name


def test_dicom_listener_takes_studies_from_other_hosts_on_its_published_port(services):
    listener = services["dicom-listener"]
    assert listener["command"] == ["python", "manage.py", "dicom_listener"]
    assert (ROOT / "dicomnet" / "management" / "commands" / "dicom_listener.py").is_file()
    environment = listener["environment"]
    assert environment["CHESTNET_DICOM_BIND"] == "0.0.0.0", "loopback takes no modality's study"
    port = int(environment["CHESTNET_DICOM_PORT"])
    assert port == settings.CHESTNET_DICOM_PORT == 11112
    published = [str(mapping).rsplit(":", 2)[-2:] for mapping in listener["ports"]]
    assert [str(port), str(port)] in published
    assert f"('127.0.0.1', {port})" in " ".join(listener["healthcheck"]["test"])


def test_web_health_probes_the_listener_by_its_service_name(services):
    """/healthz on web sends its C-ECHO to the listener container, not to its own loopback."""
    listener = services["dicom-listener"]["environment"]
    web = services["web"]["environment"]
    assert web["CHESTNET_DICOM_HOST"] == "dicom-listener"
    assert web["CHESTNET_DICOM_PORT"] == listener["CHESTNET_DICOM_PORT"]
    assert "CHESTNET_DICOM_BIND" not in web


def test_env_names_are_ones_the_settings_read(services, settings_env_names):
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (DOCKER / "compose.yml").read_text()))
    assert env_example_names() - settings_env_names - interpolated - TOOL_ENV == set()
    assert interpolated <= env_example_names(), "every ${VAR} compose needs is in .env.example"
    for name in (*SAME_IMAGE, "gpu-worker"):
        assert set(services[name]["environment"]) - settings_env_names - TOOL_ENV == set(), name
    image_env = {name for name in dockerfile_env() if not name.startswith(("PYTHON", "PIP_"))}
    assert image_env - settings_env_names - TOOL_ENV == set()


def test_env_example_names_what_production_needs():
    required = {
        "CHESTNET_ENV",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "CHESTNET_MAX_UPLOAD_MB",
        "POSTGRES_PASSWORD",
        "REDIS_PASSWORD",
    }
    assert required <= env_example_names()
    assert dockerfile_env()["CHESTNET_ENV"] == "production"


def test_image_ships_code_and_model_and_runs_gunicorn_as_non_root():
    instructions = dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    copied = [shlex.split(args)[0].rstrip("/") for op, args in instructions if op == "COPY"]
    assert {"manage.py", "chestnet_site", "diagnosis", "ml", "templates", "static"} <= set(copied)
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "read_card" in runs and "collectstatic --noinput" in runs
    assert "tensorflow-cpu" in runs and "requirements-dev" not in runs
    user = [args for op, args in instructions if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    command = json.loads(dict(instructions)["CMD"])
    assert command[:2] == ["gunicorn", settings.WSGI_APPLICATION.rsplit(".", 1)[0]]
    assert "healthcheck.py" in dict(instructions)["HEALTHCHECK"]


def test_image_ships_every_app_the_settings_install():
    """registry, mlops and dicomnet too: without one, Django does not start in any role."""
    copied = {shlex.split(args)[0].rstrip("/") for op, args in dockerfile() if op == "COPY"}
    assert project_apps() - copied == set()


def test_build_context_lets_in_what_the_dockerfile_copies_and_the_model():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*", "an allowlist keeps .venv, .git, var/ and docker/.env out"
    for op, args in dockerfile():
        if op == "COPY":
            source = shlex.split(args)[0].rstrip("/")
            assert (ROOT / source).exists(), source
            assert f"!{source}" in patterns, f"{source} is not in the build context"
    assert not [p for p in patterns if p.lstrip("!").startswith("ml/")], "ml/artifacts must ship"


@pytest.mark.parametrize("allowed", ["chestnet.example.org", ".example.org,other", "*", ""])
def test_healthcheck_sends_a_host_django_accepts(allowed):
    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hosts = [host.strip() for host in allowed.split(",") if host.strip()]
    assert validate_host(module.host_header(allowed), hosts or ["localhost"])
