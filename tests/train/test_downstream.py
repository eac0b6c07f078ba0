"""Downstream experiments (fink_t2.train.downstream*): tasks, folds, methods, a tiny end-to-end table.

Real data from ../shared/data/labeled (skipped when absent); TensorFlow tests skip without the
``[train]`` extra.
"""
from __future__ import annotations

import numpy as np
import pytest

from fink_t2.train import data, downstream, labels

from tests.conftest import shared_path
from tests.train.test_train import needs_tf

pytestmark = pytest.mark.shared
#: PLAsTiCC classes with clearly different light curves (a periodic star, a long-lived AGN, a transient)
SEPARABLE = ("RRL", "AGN", "SNIa")


@pytest.fixture(scope="module")
def plasticc_small() -> downstream.Task:
    shared_path("data", "labeled", "plasticc_snmachine", "train")
    task = downstream.plasticc_task(max_objects=2500, seed=1)
    keep = np.isin(task.label, [task.class_names.index(c) for c in SEPARABLE])
    return _subset(task, keep)


def _subset(task: downstream.Task, keep: np.ndarray) -> downstream.Task:
    return downstream.Task(task.name, task.class_names, task.curves.subset(keep), task.label[keep],
                           None if task.fixed_test is None else task.fixed_test[keep], task.prepared.subset(keep))


@pytest.fixture(scope="module")
def bts_small() -> downstream.Task:
    shared_path("data", "labeled", "ztf_bts_antares")
    return downstream.bts_task(max_objects=300, seed=2)


def test_bts_task_classes():
    assert labels.bts_task_class("SN IIn") == "SN II"
    assert labels.bts_task_class("SN Ic-BL") == "SN Ibc"
    assert labels.bts_task_class("SN Ia-91T") == "SN Ia"
    assert labels.bts_task_class("SLSN-II") == "SLSN"
    assert labels.bts_task_class("SN Ia-CSM") == "other"
    assert labels.bts_task_class("nova") == "other"
    assert labels.bts_task_class(None) == "other"


def test_task_rows_are_aligned(plasticc_small):
    task = plasticc_small
    assert len(task.curves) == len(task.label) == len(task.prepared)
    assert list(task.curves.object_id.astype(str)) == list(task.prepared.object_id)
    assert (task.curves.n_points >= downstream.MIN_POINTS).all()
    # the baseline's GP saw exactly the magnitude points: same number per object
    assert np.array_equal(task.prepared.n_points, task.curves.n_points)
    assert np.array_equal(task.prepared.label, task.label)
    # magnitudes of S/N >= 3 fluxes: mag <= 27.5 - 2.5 log10(3 sigma) and magerr <= 2.5/ln10/3
    assert (task.curves.magerr <= 2.5 / np.log(10) / 3 + 1e-6).all()


def test_bts_test_set_is_the_science_report_val_split(bts_small):
    task = bts_small
    ids = task.curves.object_id.astype(str)
    assert np.array_equal(task.fixed_test, data.split_of(ids) == "val")
    splits = downstream.make_splits(task, spc_values=(5, 20), n_folds=2)
    for split in splits:
        assert np.array_equal(split.test, np.flatnonzero(task.fixed_test))
        assert not task.fixed_test[split.train].any() and not task.fixed_test[split.val].any()


def test_splits_disjoint_nested_capped(plasticc_small):
    task = plasticc_small
    splits = downstream.make_splits(task, spc_values=(10, 40, 100000), n_folds=3, seed=7)
    assert len(splits) == 9
    by = {(s.fold, s.spc): s for s in splits}
    for s in splits:
        assert not set(s.train) & set(s.val)
        assert not (set(s.train) | set(s.val)) & set(s.test)
        labelled = task.label[np.concatenate([s.train, s.val])]
        for c in np.unique(task.label):
            pool = int(((task.label == c) & ~np.isin(np.arange(len(task)), s.test)).sum())
            assert (labelled == c).sum() == min(s.spc, pool)  # SPC, or the whole class when smaller
            assert (task.label[s.val] == c).sum() >= 1  # every class can stop early
    for fold in range(3):
        small, large = by[(fold, 10)], by[(fold, 40)]
        assert set(small.train) | set(small.val) <= set(large.train) | set(large.val)
        assert np.array_equal(small.test, large.test)
    assert not np.array_equal(by[(0, 10)].test, by[(1, 10)].test)  # each fold its own test set
    again = downstream.make_splits(task, spc_values=(10, 40, 100000), n_folds=3, seed=7)
    assert all(np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test) for a, b in zip(splits, again))


def test_feature_baseline_beats_chance(plasticc_small):
    from fink_t2.train import downstream_methods as methods

    task = plasticc_small
    ctx = methods.Context(task, raw_inputs={}, encoders={})
    split = downstream.make_splits(task, spc_values=(40,), n_folds=1)[0]
    probs = methods.METHODS["features + LR"](ctx, split, seed=0)
    assert probs.shape == (len(split.test), len(task.class_names))
    f1 = methods.metrics.macro_f1(task.label[split.test], probs)
    # the test set is ~80 % SNIa: always answering SNIa scores (0.88 + 0 + 0) / 3 ≈ 0.29, uniform guesses ≈ 0.27
    assert f1 > 0.6
