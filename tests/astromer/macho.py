"""The 10 MACHO R-band samples of the reference v0 model (../shared/reference-models/astromer-macho-v0)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fink_t2.astromer.inputs import LightCurve

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference-models" / "astromer-macho-v0"
SAMPLES_DIR = REFERENCE_DIR / "macho-samples"


def require_reference() -> Path:
    """The reference checkpoint directory, or skip (it lives outside the repository: no licence)."""
    if not (REFERENCE_DIR / "conf.json").is_file():
        pytest.skip(f"the ASTROMER v0 reference model is not at {REFERENCE_DIR} (../shared, not shipped)")
    return REFERENCE_DIR


def macho_light_curves() -> list[LightCurve]:
    """The R-band samples as light curves (file order: MJD, mag, err; '#' lines are headers)."""
    curves = []
    for path in sorted(SAMPLES_DIR.glob("lc_*.R.mjd")):
        mjd, mag, err = np.loadtxt(path, comments="#", unpack=True, ndmin=2)
        curves.append(LightCurve(path.name.removesuffix(".R.mjd"), mjd, np.zeros(len(mjd), np.int8), mag, err))
    return curves
