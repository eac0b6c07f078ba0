"""Few-label classification on encoder embeddings: the ASTROMER paper's Fig. 9 on our data.

Two labelled tasks, g/r magnitudes by the pretraining corpus' converter
(:func:`fink_t2.train.pretrain_data.flux_to_mag`: S/N ≥ 3 points only, ≥ ``MIN_POINTS`` per curve):

* ``plasticc``: the PLAsTiCC training set (14 classes, variable stars included). Its objects are
  in the pretraining corpus without labels (self-supervised on the test inputs, as the paper did).
  Each fold draws its own stratified test set (``TEST_FRACTION`` of every class).
* ``bts``: the ZTF BTS types of :data:`fink_t2.train.labels.BTS_TASK_CLASSES`. The test set is the
  BTS validation split of the science report (:func:`fink_t2.train.data.split_of`), which the
  pretraining corpus excludes; the labelled objects are drawn from the train split.

For each fold and each number of labelled objects per class (SPC; fewer when a class has fewer),
the labelled set is split into a training part and a validation slice (early stopping only); the
same :class:`Split` serves every method. The baseline's GP sees the same magnitude points.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fink_t2.contract import CLASS_NAMES
from fink_t2.train import data, pretrain_data
from fink_t2.train.labels import BTS_TASK_CLASSES, bts_task_class
from fink_t2.train.pretrain_data import Corpus

log = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("plasticc", "bts")
#: labelled objects per class of the paper's Fig. 9
SPC_VALUES: tuple[int, ...] = (20, 50, 100, 500)
N_FOLDS = 3
#: PLAsTiCC: fraction of every class held out as the fold's test set
TEST_FRACTION = 0.25
#: fraction of the labelled objects of a class kept for early stopping (at least one when ≥ 2)
VAL_FRACTION = 0.2
MIN_POINTS = pretrain_data.MIN_POINTS
#: classes with fewer usable objects are left out of a task (PLAsTiCC KN keeps 1 object at S/N ≥ 3)
MIN_CLASS_OBJECTS = 10


@dataclass
class Task:
    """Labelled light curves: object ``i`` is curve ``i`` of ``curves`` and row ``i`` of ``prepared``."""

    name: str
    class_names: tuple[str, ...]
    curves: Corpus  # magnitudes, one curve per object
    label: np.ndarray  # (n,) int64 index into class_names
    fixed_test: np.ndarray | None  # (n,) bool: the task's one test set; None = stratified per fold
    prepared: data.Prepared  # GP means of the same points (feature baseline)

    def __len__(self) -> int:
        return len(self.label)

    def class_counts(self, rows: np.ndarray | None = None) -> dict[str, int]:
        labels = self.label if rows is None else self.label[rows]
        return {name: int((labels == k).sum()) for k, name in enumerate(self.class_names)}


def _magnitude_photometry(phot: data.Photometry) -> tuple[data.Photometry, pd.DataFrame]:
    """The S/N ≥ MIN_SNR points of ``phot`` as Photometry (all marked detected) and as a magnitude table."""
    mag, magerr, kept = pretrain_data.flux_to_mag(phot.flux, phot.flux_err)
    owner = np.repeat(np.arange(len(phot)), np.diff(phot.offsets))[kept]
    counts = np.bincount(owner, minlength=len(phot))
    kept_phot = data.Photometry(phot.survey, phot.object_id, phot.label, np.concatenate(([0], np.cumsum(counts))),
                                phot.mjd[kept], phot.band[kept], phot.flux[kept], phot.flux_err[kept],
                                np.ones(int(kept.sum()), bool))
    table = pd.DataFrame({"object_id": phot.object_id[owner].astype(str), "mjd": phot.mjd[kept],
                          "band": phot.band[kept], "mag": mag, "magerr": magerr, "source": phot.survey})
    return kept_phot, table


def build_task(name: str, phot: data.Photometry, class_names: tuple[str, ...],
               fixed_test: dict[str, bool] | None) -> Task:
    """A :class:`Task` from labelled photometry (``phot.label`` indexes ``class_names``; −1 = unused).

    Objects are kept when they have ≥ ``MIN_POINTS`` magnitudes and a finite GP fit, in classes that
    keep ≥ ``MIN_CLASS_OBJECTS`` such objects.
    """
    phot = phot.subset(phot.label >= 0)
    kept_phot, table = _magnitude_photometry(phot)
    curves = pretrain_data.assemble([table], excluded=set(), min_points=MIN_POINTS)
    prepared = data.prepare_full(kept_phot)
    by_id = {oid: i for i, oid in enumerate(prepared.object_id)}
    label_of = dict(zip(phot.object_id.astype(str), phot.label))
    usable = np.array([oid in by_id for oid in curves.object_id.astype(str)])
    label = np.array([label_of[oid] for oid in curves.object_id.astype(str)], dtype=np.int64)
    counts = np.bincount(label[usable], minlength=len(class_names))
    keep = usable & (counts[label] >= MIN_CLASS_OBJECTS)
    curves, label = curves.subset(keep), label[keep]
    ids = curves.object_id.astype(str)
    prepared = prepared.subset(np.array([by_id[oid] for oid in ids], dtype=np.int64))
    test = None if fixed_test is None else np.array([fixed_test[oid] for oid in ids], dtype=bool)
    log.info("%s: %d of %d objects kept (≥ %d magnitudes, finite GP)", name, len(ids), len(phot), MIN_POINTS)
    return Task(name, class_names, curves, label, test, prepared)


def plasticc_task(directory: Path = data.PLASTICC_TRAIN_DIR, max_objects: int | None = None, seed: int = 0) -> Task:
    """PLAsTiCC training objects, 14 classes (``contract.CLASS_NAMES``), LSST g/r magnitudes."""
    phot = data.read_plasticc(directory, max_objects=max_objects, seed=seed)
    return build_task("plasticc", phot, CLASS_NAMES, fixed_test=None)


def bts_task(directory: Path = data.BTS_DIR, max_objects: int | None = None, seed: int = 0) -> Task:
    """ZTF BTS objects, :data:`BTS_TASK_CLASSES`; test = the BTS validation split."""
    phot = data.read_bts(directory, split="all", labelled_only=False)
    types = pd.read_csv(Path(directory) / "labels.csv").set_index("ZTFID")["type"]
    phot.label = np.array([BTS_TASK_CLASSES.index(bts_task_class(types.get(oid))) for oid in phot.object_id])
    if max_objects is not None and max_objects < len(phot):
        phot = phot.subset(np.sort(np.random.default_rng(seed).choice(len(phot), max_objects, replace=False)))
    ids = phot.object_id.astype(str)
    fixed_test = dict(zip(ids, data.split_of(ids) == "val"))
    return build_task("bts", phot, BTS_TASK_CLASSES, fixed_test)


def load_task(name: str, max_objects: int | None = None, seed: int = 0) -> Task:
    """The task called ``name`` (one of :data:`TASKS`) from ``../shared/data/labeled``."""
    if name == "plasticc":
        return plasticc_task(max_objects=max_objects, seed=seed)
    if name == "bts":
        return bts_task(max_objects=max_objects, seed=seed)
    raise ValueError(f"unknown task {name!r}: expected one of {TASKS}")


# ----------------------------------------------------------------------------------------------
# Folds
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Object indices of one (fold, SPC) cell; ``train`` and ``val`` are the labelled objects."""

    fold: int
    spc: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _stratified_test(label: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """Boolean mask of ``round(fraction · n_c)`` objects of every class c (at least one when n_c ≥ 2)."""
    test = np.zeros(len(label), bool)
    for c in np.unique(label):
        members = rng.permutation(np.flatnonzero(label == c))
        take = max(1, round(fraction * len(members))) if len(members) >= 2 else 0
        test[members[:take]] = True
    return test


def _labelled(members: np.ndarray, spc: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) of the first ``min(spc, n)`` of a class' permuted candidates."""
    chosen = members[:spc]
    n_val = max(1, round(val_fraction * len(chosen))) if len(chosen) >= 2 else 0
    return chosen[n_val:], chosen[:n_val]


def make_splits(task: Task, spc_values=SPC_VALUES, n_folds: int = N_FOLDS, seed: int = 0,
                test_fraction: float = TEST_FRACTION, val_fraction: float = VAL_FRACTION) -> list[Split]:
    """Seeded splits, fold by fold; within a fold the labelled sets are nested (20 ⊂ 50 ⊂ …)."""
    splits = []
    for fold in range(n_folds):
        rng = np.random.default_rng([seed, fold])
        test = task.fixed_test if task.fixed_test is not None else _stratified_test(task.label, rng, test_fraction)
        pools = {c: rng.permutation(np.flatnonzero(~test & (task.label == c))) for c in np.unique(task.label)}
        for spc in spc_values:
            parts = [_labelled(members, spc, val_fraction) for members in pools.values()]
            train = np.sort(np.concatenate([p[0] for p in parts]))
            val = np.sort(np.concatenate([p[1] for p in parts]))
            splits.append(Split(fold, spc, train, val, np.flatnonzero(test)))
    return splits
