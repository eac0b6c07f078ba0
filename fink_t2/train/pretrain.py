"""``fink-t2 pretrain``: masked-magnitude pretraining of the two-band ASTROMER encoder (tf_keras).

The recipe of ASTROMER 1 (notes §2) on our corpus (:mod:`fink_t2.train.pretrain_data`): each epoch one
random contiguous window of ``max_obs`` points per light curve, ASTROMER masks (probed 50 %: 20/16/64 %
unchanged / random / masked; masked magnitudes replaced by the learned mask token and hidden from the
keys), RMSE on the probed points, Adam (β 0.9, 0.98, ε 1e-9) with the transformer warm-up schedule,
early stopping on the hold-out RMSE. Windows and masks of the hold-out are drawn once (seeded), so
its RMSE compares across epochs and with the "predict the window mean" baseline (the RMSE of the
mean-subtracted magnitudes themselves on the same probed points).

Outputs in ``--out``: ``ckpt/`` (every epoch: model, optimizer, epoch; ``--resume`` continues from it),
``best.weights.h5`` (best hold-out RMSE), ``pretrain.json`` (config, corpus counts, per-epoch log),
``pretrain.png`` (train / hold-out RMSE per epoch).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from fink_t2.astromer import inputs
from fink_t2.config import git_commit
from fink_t2.contract import ASTROMER_TWOBAND_MAX_OBS
from fink_t2.train import pretrain_data, tf_setup
from fink_t2.train.pretrain_data import Corpus, Masks

log = logging.getLogger(__name__)

#: Adam of the transformer / ASTROMER (notes §2).
ADAM_BETAS = (0.9, 0.98)
ADAM_EPSILON = 1e-9


@dataclass(frozen=True)
class PretrainConfig:
    """Encoder size and training schedule. ``warmup_steps``: optimizer steps to the learning-rate peak
    d_model^−0.5 · warmup^−0.5; ``max_minutes``: stop after the epoch that passes this wall time."""

    d_model: int
    layers: int
    heads: int
    dff: int
    max_obs: int
    dropout: float
    pe_base: float
    batch_size: int
    epochs: int
    patience: int
    warmup_steps: int
    seed: int = 42
    max_minutes: float | None = None


CONFIGS: dict[str, PretrainConfig] = {
    # seconds on one core: for tests
    "tiny": PretrainConfig(d_model=16, layers=1, heads=2, dff=32, max_obs=32, dropout=0.0, pe_base=1000.0,
                           batch_size=32, epochs=4, patience=4, warmup_steps=40),
    # the shipped encoder (sized for the stream: see README)
    "stream": PretrainConfig(d_model=32, layers=2, heads=4, dff=64, max_obs=ASTROMER_TWOBAND_MAX_OBS, dropout=0.1,
                             pe_base=1000.0,
                             batch_size=64, epochs=400, patience=20, warmup_steps=1500, max_minutes=45.0),
}


def encoder_config(cfg: PretrainConfig):
    """The :class:`fink_t2.train.astromer_network.EncoderConfig` of the two-band variant for ``cfg``."""
    from fink_t2.train.astromer_network import EncoderConfig

    return EncoderConfig(variant="twoband", d_model=cfg.d_model, layers=cfg.layers, heads=cfg.heads, dff=cfg.dff,
                         max_obs=cfg.max_obs, pe_base=cfg.pe_base, dropout=cfg.dropout)


def learning_rate(step: np.ndarray | float, d_model: int, warmup_steps: int) -> np.ndarray:
    """d_model^−0.5 · min(step^−0.5, step · warmup^−1.5) (step counted from 1)."""
    step = np.maximum(np.asarray(step, dtype=np.float64), 1.0)
    return d_model ** -0.5 * np.minimum(step ** -0.5, step * warmup_steps ** -1.5)


# ----------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------


@dataclass
class MaskedBatch:
    """Model inputs (times, mags with random replacements, bands, valid, probe_mask = masked) and targets."""

    features: dict[str, np.ndarray]
    target: np.ndarray  # (n, L) float32, window-mean-subtracted magnitudes
    probed: np.ndarray  # (n, L) bool


def window_light_curves(corpus: Corpus, idx: np.ndarray, starts: np.ndarray, max_obs: int) -> list:
    """:class:`fink_t2.astromer.inputs.LightCurve` of ``max_obs`` points from ``starts`` of curves ``idx``."""
    curves = []
    for i, start in zip(idx, starts):
        lo = corpus.offsets[i] + start
        hi = min(lo + max_obs, corpus.offsets[i + 1])
        curves.append(inputs.LightCurve(object_id=str(corpus.object_id[i]), mjd=corpus.mjd[lo:hi],
                                        band=corpus.band[lo:hi], mag=corpus.mag[lo:hi].astype(np.float64),
                                        magerr=corpus.magerr[lo:hi].astype(np.float64)))
    return curves


def masked_batch(corpus: Corpus, idx: np.ndarray, max_obs: int, rng: np.random.Generator) -> MaskedBatch:
    """Random windows of curves ``idx``, encoded by ``inputs.batch_twoband``, with ASTROMER masks."""
    starts = pretrain_data.random_windows(corpus.n_points[idx], max_obs, rng)
    batch = inputs.batch_twoband(window_light_curves(corpus, idx, starts, max_obs), max_obs=max_obs)
    masks: Masks = pretrain_data.make_masks(batch.mags, batch.valid, rng)
    mags_in = np.where(masks.randomised, masks.random_mags, batch.mags).astype(np.float32)
    features = {"times": batch.times.astype(np.float32), "mags": mags_in, "bands": batch.bands.astype(np.int32),
                "valid": batch.valid, "probe_mask": masks.masked}
    return MaskedBatch(features, batch.mags.astype(np.float32), masks.probed)


def concat_batches(parts: list[MaskedBatch]) -> MaskedBatch:
    return MaskedBatch({k: np.concatenate([p.features[k] for p in parts]) for k in parts[0].features},
                       np.concatenate([p.target for p in parts]), np.concatenate([p.probed for p in parts]))


def holdout_batch(corpus: Corpus, max_obs: int, seed: int) -> MaskedBatch:
    """The fixed hold-out windows and masks (drawn once from ``seed``)."""
    rng = np.random.default_rng([seed, 1])
    return masked_batch(corpus, np.arange(len(corpus)), max_obs, rng)


def mean_baseline_rmse(batch: MaskedBatch) -> float:
    """RMSE of predicting the window mean (0 after mean subtraction) on the probed points, mag."""
    return pretrain_data.probed_rmse(np.zeros_like(batch.target), batch.target, batch.probed)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _schedule_class():
    keras = tf_setup.keras()
    tf = tf_setup.tf()

    class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
        """:func:`learning_rate` as a tf_keras schedule."""

        def __init__(self, d_model: int, warmup_steps: int):
            self.d_model, self.warmup_steps = d_model, warmup_steps

        def __call__(self, step):
            step = tf.maximum(tf.cast(step, tf.float32) + 1.0, 1.0)
            return self.d_model ** -0.5 * tf.minimum(tf.math.rsqrt(step), step * self.warmup_steps ** -1.5)

        def get_config(self):
            return {"d_model": self.d_model, "warmup_steps": self.warmup_steps}

    return WarmupSchedule


def per_window_squared_error(tf, predicted, target, probed):
    """(Σ probed squared error, number probed) per window, as tensors."""
    probed = tf.cast(probed, tf.float32)
    return tf.reduce_sum(probed * tf.square(predicted - target), axis=1), tf.reduce_sum(probed, axis=1)


def rmse_loss(tf, predicted, target, probed):
    """ASTROMER's RMSE (see :func:`fink_t2.train.pretrain_data.probed_rmse`) as a differentiable tensor."""
    sse, count = per_window_squared_error(tf, predicted, target, probed)
    has = tf.cast(count > 0, tf.float32)
    mean = tf.reduce_sum(has * sse / tf.maximum(count, 1.0)) / tf.maximum(tf.reduce_sum(has), 1.0)
    return tf.sqrt(mean + 1e-12)


class Trainer:
    """Model, optimizer, checkpoint and the train / evaluation steps."""

    def __init__(self, cfg: PretrainConfig, out: Path):
        from fink_t2.train import astromer_network
        from fink_t2.train.fit import seed_everything

        self.tf, keras = tf_setup.tf(), tf_setup.keras()
        seed_everything(cfg.seed)
        self.cfg, self.out = cfg, out
        self.model = astromer_network.build_pretraining_model(encoder_config(cfg))
        schedule = _schedule_class()(cfg.d_model, cfg.warmup_steps)
        self.optimizer = keras.optimizers.Adam(learning_rate=schedule, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1],
                                               epsilon=ADAM_EPSILON)
        self.epoch = self.tf.Variable(0, dtype=self.tf.int64, trainable=False)
        self.checkpoint = self.tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch)
        self.manager = self.tf.train.CheckpointManager(self.checkpoint, str(out / "ckpt"), max_to_keep=2)
        self._train_step = self.tf.function(self._step)
        self._predict = self.tf.function(lambda f: self._reconstruction(self.model(f, training=False)))

    @staticmethod
    def _reconstruction(output):
        return output[..., 0] if output.shape.rank == 3 else output

    def _step(self, features, target, probed):
        tf = self.tf
        with tf.GradientTape() as tape:
            predicted = self._reconstruction(self.model(features, training=True))
            loss = rmse_loss(tf, predicted, target, probed)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return per_window_squared_error(tf, predicted, target, probed)

    def train_batch(self, batch: MaskedBatch) -> tuple[np.ndarray, np.ndarray]:
        sse, count = self._train_step(batch.features, batch.target, batch.probed)
        return sse.numpy(), count.numpy()

    def predict(self, batch: MaskedBatch, size: int = 512) -> np.ndarray:
        n = len(batch.target)
        return np.concatenate([self._predict({k: v[i:i + size] for k, v in batch.features.items()}).numpy()
                               for i in range(0, n, size)]) if n else np.zeros((0, self.cfg.max_obs), np.float32)

    def restore(self) -> bool:
        """Restore the latest checkpoint; False when there is none."""
        if self.manager.latest_checkpoint is None:
            return False
        self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
        return True


def _rmse_of(sse: np.ndarray, count: np.ndarray) -> float:
    has = count > 0
    return float(np.sqrt(np.mean(sse[has] / count[has])))


def _progress(total: int, desc: str, enabled: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # plain per-epoch lines are printed anyway
        return None
    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=not enabled)


def run_epoch(trainer: Trainer, corpus: Corpus, epoch: int, progress: bool) -> float:
    """One pass over the training curves (seeded by epoch), in random order; train RMSE, mag."""
    cfg = trainer.cfg
    rng = np.random.default_rng([cfg.seed, 2, epoch])
    order = rng.permutation(len(corpus))
    sse, count = [], []
    bar = _progress(int(np.ceil(len(order) / cfg.batch_size)), f"epoch {epoch}", progress)
    for i in range(0, len(order), cfg.batch_size):
        s, c = trainer.train_batch(masked_batch(corpus, order[i:i + cfg.batch_size], cfg.max_obs, rng))
        sse.append(s)
        count.append(c)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(rmse=f"{_rmse_of(np.concatenate(sse), np.concatenate(count)):.4f}")
    if bar is not None:
        bar.close()
    return _rmse_of(np.concatenate(sse), np.concatenate(count))


def _state_file(out: Path) -> Path:
    return out / "pretrain.json"


def pretrain(corpus: Corpus, cfg: PretrainConfig, out: Path, resume: bool = False, progress: bool = False,
             provenance: dict | None = None) -> dict:
    """Train on the non-hold-out curves of ``corpus``; early stopping on the hold-out RMSE.

    Returns the log (also written to ``out/pretrain.json`` after every epoch).
    """
    out.mkdir(parents=True, exist_ok=True)
    held = pretrain_data.holdout_of(corpus.object_id)
    train, val = corpus.subset(~held), corpus.subset(held)
    val_batch = holdout_batch(val, cfg.max_obs, cfg.seed)
    trainer = Trainer(cfg, out)
    state = _initial_state(cfg, corpus, train, val, val_batch, provenance)
    if resume and trainer.restore() and _state_file(out).is_file():
        state = json.loads(_state_file(out).read_text())
        state["config"] = asdict(cfg)  # e.g. a higher --epochs: the stop is judged again with it
        state["stopped"] = _stop_reason(state, cfg) if state["history"] else None
        log.info("resumed from epoch %d", int(trainer.epoch.numpy()))
    # the code of each start and resume (a run may span sessions; the checkout may move on during one)
    state["commits"] = list(dict.fromkeys([*state.get("commits", []), git_commit() or "unknown"]))
    started = time.monotonic() - state["train_seconds"]
    while int(trainer.epoch.numpy()) < cfg.epochs and not state["stopped"]:
        epoch = int(trainer.epoch.numpy()) + 1
        train_rmse = run_epoch(trainer, train, epoch, progress)
        val_rmse = pretrain_data.probed_rmse(trainer.predict(val_batch), val_batch.target, val_batch.probed)
        trainer.epoch.assign(epoch)
        state["train_seconds"] = time.monotonic() - started
        _record_epoch(state, trainer, epoch, train_rmse, val_rmse, out)
        print(f"epoch {epoch}: train RMSE {train_rmse:.4f}  hold-out RMSE {val_rmse:.4f}  "
              f"(mean baseline {state['baseline_val_rmse']:.4f}, best {state['best_val_rmse']:.4f} at epoch "
              f"{state['best_epoch']})  {state['train_seconds'] / 60:.1f} min", flush=True)
        state["stopped"] = _stop_reason(state, cfg)
        trainer.manager.save(checkpoint_number=epoch)
        _state_file(out).write_text(json.dumps(state, indent=1) + "\n")
    plot_curves(state, out / "pretrain.png")
    return state


def _initial_state(cfg, corpus, train, val, val_batch, provenance) -> dict:
    return {"config": asdict(cfg), "corpus": corpus.counts(), "n_train_curves": len(train),
            "n_holdout_curves": len(val), "holdout": {"seed": pretrain_data.HOLDOUT_SEED,
                                                      "fraction": pretrain_data.HOLDOUT_FRACTION},
            "baseline_val_rmse": mean_baseline_rmse(val_batch), "history": [], "best_val_rmse": float("inf"),
            "best_epoch": 0, "train_seconds": 0.0, "stopped": None, "provenance": provenance or {}}


def _record_epoch(state: dict, trainer: Trainer, epoch: int, train_rmse: float, val_rmse: float, out: Path) -> None:
    step = int(trainer.optimizer.iterations.numpy())
    state["history"].append({"epoch": epoch, "train_rmse": train_rmse, "val_rmse": val_rmse, "steps": step,
                             "lr": float(learning_rate(step, trainer.cfg.d_model, trainer.cfg.warmup_steps)),
                             "seconds": state["train_seconds"]})
    if val_rmse < state["best_val_rmse"]:
        state["best_val_rmse"], state["best_epoch"] = val_rmse, epoch
        trainer.model.save_weights(str(out / "best.weights.h5"))


def _stop_reason(state: dict, cfg: PretrainConfig) -> str | None:
    epoch = state["history"][-1]["epoch"]
    if epoch - state["best_epoch"] >= cfg.patience:
        return f"early stopping: no better hold-out RMSE for {cfg.patience} epochs"
    if cfg.max_minutes is not None and state["train_seconds"] > 60 * cfg.max_minutes:
        return f"time budget: {cfg.max_minutes:g} min passed"
    if epoch >= cfg.epochs:
        return f"epoch cap {cfg.epochs}"
    return None


def plot_curves(state: dict, path: Path) -> Path:
    """Train and hold-out RMSE per epoch, with the window-mean baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = state["history"]
    epochs = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [h["train_rmse"] for h in hist], label="train (random windows and masks)")
    ax.plot(epochs, [h["val_rmse"] for h in hist], label="hold-out (fixed windows and masks)")
    ax.axhline(state["baseline_val_rmse"], color="grey", ls="--", label="hold-out: predict the window mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE on probed points (mag)")
    ax.set_title(f"two-band ASTROMER pretraining, best {state['best_val_rmse']:.4f} mag at epoch {state['best_epoch']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def with_overrides(cfg: PretrainConfig, epochs: int | None = None, max_minutes: float | None = None) -> PretrainConfig:
    """``cfg`` with the command line's ``--epochs`` / ``--max-minutes`` when given."""
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if max_minutes is not None:
        cfg = replace(cfg, max_minutes=max_minutes)
    return cfg


def command_line() -> str:
    return " ".join(["fink-t2", *sys.argv[1:]])


# ----------------------------------------------------------------------------------------------
# Shipping
# ----------------------------------------------------------------------------------------------


def trained_encoder(cfg: PretrainConfig, weights: Path):
    """The inference encoder (tf_keras) with the weights of a saved pretraining model."""
    from fink_t2.train import astromer_network

    tf_setup.tf()
    model = astromer_network.build_pretraining_model(encoder_config(cfg))
    model.load_weights(str(weights))
    encoder = astromer_network.build_encoder(encoder_config(cfg))
    copied = astromer_network.copy_weights(model, encoder)
    if copied != sum(1 for layer in encoder.layers if layer.weights):
        raise RuntimeError(f"{weights}: only {copied} weighted layers of the encoder found in the pretraining model")
    return encoder


def holdout_rmse_by_source(corpus: Corpus, cfg: PretrainConfig, weights: Path) -> dict[str, dict]:
    """Hold-out RMSE of the saved pretraining model and of the window-mean baseline, per corpus source.

    The same fixed windows and masks as in training (per-source RMSEs of one draw: within a source,
    the windows are those of :func:`holdout_batch` over the whole hold-out).
    """
    from fink_t2.train import astromer_network

    tf_setup.tf()
    val = corpus.subset(pretrain_data.holdout_of(corpus.object_id))
    batch = holdout_batch(val, cfg.max_obs, cfg.seed)
    model = astromer_network.build_pretraining_model(encoder_config(cfg))
    model.load_weights(str(weights))
    predicted = np.concatenate([model({k: v[i:i + 512] for k, v in batch.features.items()}, training=False).numpy()
                                for i in range(0, len(val), 512)])
    out = {}
    for source in np.unique(val.source):
        rows = val.source == source
        out[str(source)] = {"curves": int(rows.sum()),
                            "rmse_mag": pretrain_data.probed_rmse(predicted[rows], batch.target[rows], batch.probed[rows]),
                            "window_mean_rmse_mag": pretrain_data.probed_rmse(
                                np.zeros_like(batch.target[rows]), batch.target[rows], batch.probed[rows])}
    return out


def training_provenance(state: dict, command: str) -> dict:
    """What the shipped metadata records about the pretraining run."""
    import datetime

    last = state["history"][-1] if state["history"] else {}
    return {"method": "ASTROMER masked-magnitude pretraining (fink_t2.train.pretrain)",
            "command": command, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "training_commits": state.get("commits", []), "ship_commit": git_commit(), "pretrain_config": state["config"], "corpus": state["corpus"],
            "n_train_curves": state["n_train_curves"], "n_holdout_curves": state["n_holdout_curves"],
            "holdout": state["holdout"], "holdout_rmse_mag": state["best_val_rmse"],
            "holdout_window_mean_rmse_mag": state["baseline_val_rmse"], "best_epoch": state["best_epoch"],
            "epochs_run": last.get("epoch", 0), "optimizer_steps": last.get("steps", 0),
            "train_minutes": round(state["train_seconds"] / 60, 1), "stopped": state["stopped"],
            "excluded": "BTS val split (fink_t2.train.data.split_of) and BTS objects withheld from light_curves/"}


def ship(out: Path, cfg: PretrainConfig, models_dir: Path, ship_id: str, command: str,
         corpus: Corpus | None = None) -> Path:
    """Export the best checkpoint of ``out`` to ``models_dir/<ship_id>.tflite`` (+ ``.json``); with the
    training ``corpus``, the metadata also gets the hold-out RMSE per source."""
    from fink_t2.train import astromer_export

    state = json.loads(_state_file(out).read_text())
    provenance = training_provenance(state, command)
    if corpus is not None:
        provenance["holdout_by_source"] = holdout_rmse_by_source(corpus, cfg, out / "best.weights.h5")
    encoder = trained_encoder(cfg, out / "best.weights.h5")
    return astromer_export.export_encoder(encoder, encoder_config(cfg), models_dir, ship_id, quantize=True,
                                          provenance=provenance)
