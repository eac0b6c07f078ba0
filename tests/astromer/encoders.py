"""Encoders and heads for the ASTROMER stream tests: the shipped encoder when it exists, else a tiny
randomly initialised two-band encoder exported once per session (needs the ``[train]`` stack)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fink_t2.astromer.encoder import Encoder
from fink_t2.astromer.head import save_head

_EXPORTED: dict[str, Path] = {}


def stream_encoder(tmp_path: Path) -> tuple[Path, Encoder]:
    """(path, loaded encoder): the shipped encoder, else a tiny random one exported under ``tmp_path``."""
    raise NotImplementedError("filled in once astro-enc's exporter exists")


def random_head(folder: Path, encoder: Encoder, classes: list[str], seed: int = 0) -> Path:
    """A seeded random dense head (d → 16 relu → classes softmax) for ``encoder``'s embeddings."""
    rng = np.random.default_rng(seed)
    d = encoder.width
    arrays = {"0.kernel": rng.normal(0, 1 / np.sqrt(d), (d, 16)), "0.bias": rng.normal(0, 0.1, 16),
              "1.kernel": rng.normal(0, 0.5, (16, len(classes))), "1.bias": np.zeros(len(classes))}
    layers = [{"kind": "dense", "activation": "relu"}, {"kind": "dense", "activation": "softmax"}]
    return save_head(folder / f"head-{seed}", layers, arrays, f"test-head-{seed}", classes, encoder.sha256)
