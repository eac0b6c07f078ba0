"""docker/: checked without a container engine (none on the development machines).

The Dockerfile's sources exist and reach the build context; compose builds one image, runs the
broker as a main process with a healthcheck the job waits for, keeps broker data and checkpoints in
volumes at the paths the code uses, and restarts both. The healthcheck command itself is run.
"""
from __future__ import annotations

import fnmatch
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fink_t2.config import Config
from fink_t2.kafka import broker
from tests.conftest import REPO
from tests.conftest_kafka import free_loopback_port

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
CONTEXT = (REPO / "docker" / COMPOSE["services"]["kafka"]["build"]["context"]).resolve()


def _instructions(name: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{name} ")]


def _ignored(relative: str) -> bool:
    patterns = [p.strip() for p in (CONTEXT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
               for prefix in prefixes for pattern in patterns)


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = [source for args in _instructions("COPY") for source in args[:-1]]
    assert sources, "no COPY in the Dockerfile"
    missing = [s for s in sources if not (CONTEXT / s).exists()]
    excluded = [s for s in sources if _ignored(s)]
    assert not missing and not excluded, f"missing: {missing}, excluded by .dockerignore: {excluded}"
    assert _ignored(".venv") and _ignored("jars") and _ignored("run/kafka")  # heavy or machine-local


def test_compose_builds_one_image_for_both_services():
    services = COMPOSE["services"]
    assert [name for name, s in services.items() if "build" in s] == ["kafka"]
    assert {s["image"] for s in services.values()} == {services["kafka"]["image"]}


def test_broker_is_the_main_process_with_a_healthcheck_the_job_waits_for():
    kafka, t2 = COMPOSE["services"]["kafka"], COMPOSE["services"]["t2"]
    assert kafka["command"][:2] == ["kafka", "run"]  # exec's the JVM: no `up && tail -F`
    assert "entrypoint" not in kafka
    assert kafka["healthcheck"]["test"][0] == "CMD"
    assert t2["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert t2["network_mode"] == "service:kafka"  # both on 127.0.0.1 (the only address the broker binds)
    assert all(s["restart"] in ("unless-stopped", "always") for s in COMPOSE["services"].values())


def test_volumes_are_where_the_code_keeps_broker_data_and_checkpoints():
    (workdir,) = _instructions("WORKDIR")
    root = Path(workdir[0])
    mounts = {service: {v.split(":", 1)[1] for v in s.get("volumes", [])} for service, s in COMPOSE["services"].items()}
    assert str(root / broker.DEFAULT_RUN_DIR.relative_to(REPO)) in mounts["kafka"]
    assert str(root / Config().checkpoint.dir) in mounts["t2"]
    assert set(COMPOSE["volumes"]) == {v.split(":", 1)[0] for s in COMPOSE["services"].values()
                                       for v in s.get("volumes", [])}


def _healthcheck(bootstrap: str) -> subprocess.CompletedProcess:
    command = COMPOSE["services"]["kafka"]["healthcheck"]["test"][1:]
    command = [sys.executable if c == "python" else bootstrap if c == "127.0.0.1:9092" else c for c in command]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_healthcheck_fails_without_a_broker():
    assert _healthcheck(f"127.0.0.1:{free_loopback_port()}").returncode == 1


@pytest.mark.integration
def test_healthcheck_passes_on_a_live_broker(kafka_broker: str):
    done = _healthcheck(kafka_broker)
    assert done.returncode == 0 and "up" in done.stdout
