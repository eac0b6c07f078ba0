"""The classifiers compared by the downstream experiments, each trained and scored on one :class:`Split`.

Every method returns (n_test, n_classes) probabilities for ``split.test``; only ``split.train``
is fitted and ``split.val`` decides early stopping. Frozen encoders are run once per task
(:class:`EncoderView` caches the embeddings); fine-tuning starts each split from the pretrained
weights again.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fink_t2.train import downstream_heads as heads
from fink_t2.train import metrics
from fink_t2.train.baseline import FeatureBaseline
from fink_t2.train.downstream import Split, Task


@dataclass
class EncoderView:
    """One encoder's view of a task: its (n, L) input arrays and, lazily, its frozen embeddings.

    ``make_encoder`` returns a fresh tf_keras encoder (inputs dict → (B, L, d)) with the
    pretrained weights; ``label`` names it in tables (e.g. "ours", "v0 MACHO r").
    """

    label: str
    inputs: dict[str, np.ndarray]
    make_encoder: Callable[[], object]
    _per_step: np.ndarray | None = field(default=None, repr=False)
    _pooled: np.ndarray | None = field(default=None, repr=False)

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[index] for name, values in self.inputs.items()}

    @property
    def per_step(self) -> np.ndarray:
        """(n, L, d) float32 last-layer embeddings of the frozen encoder (computed once)."""
        if self._per_step is None:
            self._per_step = heads.predict_raw(self.make_encoder(), self.inputs).astype(np.float32)
        return self._per_step

    @property
    def pooled(self) -> np.ndarray:
        """(n, d) mean over the valid observations of :attr:`per_step` (computed once)."""
        if self._pooled is None:
            self._pooled = heads.predict_pooled(self.make_encoder(), self.inputs)
        return self._pooled


@dataclass
class Context:
    """What the methods of one task share: the task, the raw-LSTM inputs, the encoders by key."""

    task: Task
    raw_inputs: dict[str, np.ndarray]
    encoders: dict[str, EncoderView]
    n_bands: int = 2


def _n_classes(ctx: Context) -> int:
    return len(ctx.task.class_names)


def features_logreg(ctx: Context, split: Split, seed: int) -> np.ndarray:
    """The science report's feature baseline (GP features → logistic regression) on train ∪ val,
    each class weighted equally (the heads' loss does the same; macro-F1 counts classes equally)."""
    labelled = ctx.task.prepared.subset(np.concatenate([split.train, split.val]))
    balanced = dataclasses.replace(labelled, weight=heads.balanced_weights(labelled.label).astype(np.float64))
    model = FeatureBaseline.fit(balanced, seed=seed)  # class-balanced, as the heads' loss
    return model.predict(ctx.task.prepared.subset(split.test))[:, :_n_classes(ctx)]


def raw_lstm(ctx: Context, split: Split, seed: int) -> np.ndarray:
    """2×LSTM on the raw light curves (the two-band encoder's normalised inputs)."""
    def rows(index):
        return {name: values[index] for name, values in ctx.raw_inputs.items()}

    y = ctx.task.label
    model = heads.raw_lstm(ctx.n_bands, _n_classes(ctx))
    heads.fit(model, rows(split.train), y[split.train], rows(split.val), y[split.val], _with_seed(heads.LSTM_FIT, seed))
    return heads.predict_proba(model, rows(split.test))


def _with_seed(config: heads.FitConfig, seed: int) -> heads.FitConfig:
    return dataclasses.replace(config, seed=seed)


#: floor of the z-scoring scale: a dimension constant over the training objects is centred, not blown up
MIN_SCALE = 1e-6


def standardisation(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per dimension of ``x[rows]`` (the training objects): x ↦ (x − mean) / scale."""
    return x[rows].mean(axis=0), np.maximum(x[rows].std(axis=0), MIN_SCALE)


def _attention_rows(view: EncoderView, index: np.ndarray) -> dict[str, np.ndarray]:
    return {"embeddings": view.per_step[index], "valid": view.inputs["valid"][index].astype(np.float32)}


@dataclass
class TrainedHead:
    """A head trained on a frozen encoder's embeddings: ``pooling`` "mean" (a pooled MLP on embeddings
    z-scored by ``mean``, ``scale``) or "attention" (an attention-pooled MLP on per-step embeddings)."""

    model: object
    pooling: str
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def predict(self, view: EncoderView, index: np.ndarray) -> np.ndarray:
        """(len(index), n_classes) probabilities of the objects ``index`` from the frozen embeddings."""
        if self.pooling == "mean":
            return heads.predict_proba(self.model, ((view.pooled[index] - self.mean) / self.scale).astype(np.float32))
        return heads.predict_proba(self.model, _attention_rows(view, index))


def fit_pooled_head(pooled: np.ndarray, y: np.ndarray, n_classes: int, train: np.ndarray, val: np.ndarray,
                    seed: int) -> TrainedHead:
    """A pooled MLP on (n, d) embeddings ``pooled`` z-scored on the ``train`` objects (:func:`standardisation`),
    early-stopped on ``val``: the "mean" head of the frozen methods and of ``fink-t2 finetune``."""
    mean, scale = standardisation(pooled, train)
    x = ((pooled - mean) / scale).astype(np.float32)
    model = heads.pooled_mlp(x.shape[1], n_classes)
    heads.fit(model, x[train], y[train], x[val], y[val], _with_seed(heads.HEAD_FIT, seed))
    return TrainedHead(model, "mean", mean, scale)


def train_head(view: EncoderView, pooling: str, y: np.ndarray, n_classes: int, train: np.ndarray,
               val: np.ndarray, seed: int) -> TrainedHead:
    """A ``pooling`` ("mean" | "attention") head fitted on ``train`` objects of the frozen encoder,
    early-stopped on ``val``; mean-pooled embeddings are z-scored on the training objects."""
    if pooling == "mean":
        return fit_pooled_head(view.pooled, y, n_classes, train, val, seed)
    if pooling == "attention":
        model = heads.attention_mlp(view.per_step.shape[2], n_classes)
        heads.fit(model, _attention_rows(view, train), y[train], _attention_rows(view, val), y[val],
                  _with_seed(heads.HEAD_FIT, seed))
        return TrainedHead(model, pooling)
    raise ValueError(f"pooling {pooling!r}: 'mean' or 'attention'")


def fine_tune(view: EncoderView, head: TrainedHead, y: np.ndarray, train: np.ndarray, val: np.ndarray,
              seed: int):
    """A fresh copy of the view's encoder + ``head`` (already trained on the frozen encoder: a random
    head's first gradients would scramble the pretrained weights, and the few epochs the CPU budget
    allows do not train a head from scratch), trained end to end; the tf_keras model (logits)."""
    model = heads.finetuned(view.make_encoder(), head.model, head.pooling, head.mean, head.scale)
    heads.fit(model, view.rows(train), y[train], view.rows(val), y[val], _with_seed(heads.FINETUNE_FIT, seed))
    return model


def frozen(pooling: str) -> Callable:
    """A ``pooling``-head MLP on the frozen encoder's embeddings."""
    def method(view: EncoderView, ctx: Context, split: Split, seed: int) -> np.ndarray:
        head = train_head(view, pooling, ctx.task.label, _n_classes(ctx), split.train, split.val, seed)
        return head.predict(view, split.test)

    method.__doc__ = f"{pooling.capitalize()}-pooled MLP on the embeddings of the frozen encoder."
    return method


def fine_tuned(pooling: str) -> Callable:
    """Encoder + ``pooling`` ("mean" | "attention") head trained end to end (:func:`fine_tune`)."""
    def method(view: EncoderView, ctx: Context, split: Split, seed: int) -> np.ndarray:
        y = ctx.task.label
        head = train_head(view, pooling, y, _n_classes(ctx), split.train, split.val, seed)
        return heads.predict_proba(fine_tune(view, head, y, split.train, split.val, seed), view.rows(split.test))

    method.__doc__ = f"Encoder fine-tuned with a {pooling}-pooled MLP head (trained on the frozen encoder first)."
    return method


@dataclass(frozen=True)
class Method:
    """A row of the downstream table: ``encoder`` is a key of :attr:`Context.encoders` (None: no encoder)."""

    key: str
    encoder: str | None
    run: Callable

    def label(self, encoders: dict[str, EncoderView]) -> str:
        """The table name: the key, with the encoder key replaced by that encoder's label."""
        if self.encoder is None:
            return self.key
        return self.key.replace(self.encoder, encoders[self.encoder].label, 1)

    def __call__(self, ctx: Context, split: Split, seed: int) -> np.ndarray:
        if self.encoder is None:
            return self.run(ctx, split, seed)
        return self.run(ctx.encoders[self.encoder], ctx, split, seed)


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("features + LR", None, features_logreg),
    Method("LSTM (raw)", None, raw_lstm),
    Method("v0 frozen + MLP", "v0", frozen("mean")),
    Method("ours frozen + MLP", "ours", frozen("mean")),
    Method("random frozen + MLP", "random", frozen("mean")),
    Method("ours frozen + attention", "ours", frozen("attention")),
    Method("ours fine-tuned + MLP", "ours", fine_tuned("mean")),
    Method("ours fine-tuned + attention", "ours", fine_tuned("attention")),
)}


def run_cells(ctx: Context, methods: list[Method], splits: list[Split], seed: int = 0,
              progress: Callable[[str], None] | None = None) -> list[dict]:
    """Train and score every method on every split; one record per (method, fold, SPC) with macro-F1."""
    records = []
    for method in methods:
        for split in splits:
            start = time.process_time()
            probs = method(ctx, split, seed + split.fold)
            y_test = ctx.task.label[split.test]
            record = {"task": ctx.task.name, "method_key": method.key, "method": method.label(ctx.encoders),
                      "fold": split.fold,
                      "spc": split.spc, "n_train": len(split.train), "n_val": len(split.val),
                      "n_test": len(split.test), "macro_f1": metrics.macro_f1(y_test, probs),
                      "cpu_seconds": time.process_time() - start}
            records.append(record)
            if progress is not None:
                progress(f"{record['task']} {record['method']} fold {split.fold} SPC {split.spc}: "
                         f"macro-F1 {record['macro_f1']:.3f} ({record['cpu_seconds']:.0f} s CPU)")
    return records
