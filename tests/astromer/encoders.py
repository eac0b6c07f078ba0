"""Encoders and heads for the ASTROMER stream tests: the shipped encoder when it exists, else a tiny
randomly initialised two-band encoder exported once per session (needs the ``[train]`` stack)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fink_t2.astromer.encoder import Encoder
from fink_t2.astromer.head import save_head
from fink_t2.contract import ASTROMER_SHIPPED_ENCODER_ID
from fink_t2.science.model import MODELS_DIR

from tests.conftest import REPO

_EXPORTED: dict[str, Path] = {}


#: The tiny random encoder: two-band, d = 16, one layer, the stream's 64-observation window.
TINY_EXPORT = """
import sys
from pathlib import Path
from fink_t2.train import tf_setup
from fink_t2.train.astromer_export import export_encoder
from fink_t2.train.astromer_network import EncoderConfig, build_encoder
tf_setup.keras().utils.set_random_seed(0)
cfg = EncoderConfig(variant="twoband", d_model=16, layers=1, heads=2, dff=32)
print(export_encoder(build_encoder(cfg), cfg, Path(sys.argv[1]), "test-astromer-tiny", quantize=True,
                     provenance={"training": "none: randomly initialised, seed 0 (tests only)"}))
"""


def stream_encoder(tmp_path: Path) -> tuple[Path, Encoder]:
    """(path, loaded encoder): the shipped encoder, else a tiny random one, exported once per session
    (in a subprocess, so the test process never imports TensorFlow) under the first ``tmp_path``."""
    shipped = MODELS_DIR / f"{ASTROMER_SHIPPED_ENCODER_ID}.tflite"
    if shipped.is_file():
        return shipped, Encoder.load(shipped)
    if "tiny" not in _EXPORTED:
        if importlib.util.find_spec("tf_keras") is None:
            pytest.skip(f"no shipped encoder ({shipped}) and no tf_keras to export a test one: pip install -e '.[train]'")
        done = subprocess.run([sys.executable, "-c", TINY_EXPORT, str(tmp_path / "tiny-encoder")], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        _EXPORTED["tiny"] = Path(done.stdout.strip().splitlines()[-1])
    return _EXPORTED["tiny"], Encoder.load(_EXPORTED["tiny"])


def random_head(folder: Path, encoder: Encoder, classes: list[str], seed: int = 0) -> Path:
    """A seeded random dense head (d → 16 relu → classes softmax) for ``encoder``'s embeddings."""
    rng = np.random.default_rng(seed)
    d = encoder.width
    arrays = {"0.kernel": rng.normal(0, 1 / np.sqrt(d), (d, 16)), "0.bias": rng.normal(0, 0.1, 16),
              "1.kernel": rng.normal(0, 0.5, (16, len(classes))), "1.bias": np.zeros(len(classes))}
    layers = [{"kind": "dense", "activation": "relu"}, {"kind": "dense", "activation": "softmax"}]
    return save_head(folder / f"head-{seed}", layers, arrays, f"test-head-{seed}", classes, encoder.meta["sha256"])
