"""Shared test fixtures: paths to the repo's sample alerts and to ../shared."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_ALERTS = REPO / "data" / "alerts"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with a clear reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared ({path} not found): run beside the project's shared/ folder")
    return path


@pytest.fixture(scope="session")
def sample_payloads() -> list[bytes]:
    """Raw bytes of the shipped single-alert .avro sample files."""
    files = sorted(SAMPLE_ALERTS.glob("fink-broker_basic_alerts_local_20200101/*.avro"))
    files += sorted(SAMPLE_ALERTS.glob("fink-alert-simulator_datasim_20181129/*.avro"))
    assert files, f"no sample alerts under {SAMPLE_ALERTS}"
    return [f.read_bytes() for f in files]

pytest_plugins = ["tests.conftest_kafka"]
