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


def real_alert_light_curves(min_points_per_band: int = 0):
    """Light curves of the ../shared ZTF alerts that have usable g+r photometry, whatever the
    quality/extragalactic cuts say (skips the test when ../shared is absent).

    With ``min_points_per_band`` only the alerts with at least that many points in g and in r.
    """
    import numpy as np

    from fink_t2.alerts.batch import records_to_batch
    from fink_t2.science.lightcurve import build_light_curves, cut_reasons
    from fink_t2.alerts.sources import iter_records

    root = shared_path("data", "ztf")
    batch = records_to_batch([r.record for r in iter_records([root]) if r.record is not None])
    skipped = ("too_few_points_per_band", "invalid_photometry", "candidate_band_not_gr")
    usable = [i for i, r in enumerate(cut_reasons(batch)) if batch.error[i] is None and r not in skipped]
    lcs = build_light_curves(batch, np.array(usable))
    per_band = np.stack([(lcs.mask & (lcs.band == b)).sum(axis=1) for b in (0, 1)])
    return build_light_curves(batch, lcs.index[(per_band >= min_points_per_band).all(axis=0)])
