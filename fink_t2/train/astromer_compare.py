"""``fink-t2 evaluate --astromer-head``: the ASTROMER classifier against t2 on the same emulated alerts.

Both run through the stream's own code on one ``AlertBatch`` of emulated alerts (the draw of
``evaluate``: ``per_object`` alert epochs per object, seeded): t2 by
:func:`fink_t2.science.classify.run_stages` (cuts → light curves → GP → model), the head by
:func:`fink_t2.astromer.classify.run_head` (cuts → the same light curves → encoder → head). The
metrics are computed on the alerts both classify (t2's GP failures are left out of both), each
alert weighted 1/(alerts of its object). The head's probabilities are placed in t2's 14-class order
(0 for the classes it lacks), so the metrics are the same functions on the same columns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fink_t2.alerts.batch import AlertBatch
from fink_t2.astromer.classify import AstromerStage, check_head_fits, run_head
from fink_t2.astromer.encoder import Encoder
from fink_t2.astromer.head import HeadError, load_head
from fink_t2.contract import CLASS_NAMES
from fink_t2.science.classify import STATUS_OK, run_stages
from fink_t2.science.model import load_model
from fink_t2.train import data, metrics


def emulated_alerts(source: str, directory: str | Path, split: str, per_object: int, seed: int
                    ) -> tuple[AlertBatch, np.ndarray, np.ndarray]:
    """The emulated alerts of the labelled objects of a folder: batch, label index (A,), object id (A,)."""
    if source == "plasticc":
        phot = data.read_plasticc(directory, split=split)
    else:
        phot = data.read_bts(directory, split=split)
    phot = phot.subset(phot.label >= 0)
    alerts = data.sample_alerts(phot, per_object, seed)
    return data.alert_batch(phot, alerts), phot.label[alerts.row], phot.object_id[alerts.row].astype(str)


def in_t2_order(probs: np.ndarray, class_names: tuple[str, ...]) -> np.ndarray:
    """(N, 14) probabilities in ``CLASS_NAMES`` order from columns named ``class_names`` (0 elsewhere)."""
    out = np.zeros((len(probs), len(CLASS_NAMES)))
    out[:, [CLASS_NAMES.index(c) for c in class_names]] = probs
    return out


def both_classified(batch: AlertBatch, t2_model_path: str | Path, stage: AstromerStage
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Positions in the batch classified by both, their t2 and head probabilities (N, 14), and ages (days)."""
    t2 = run_stages(batch, load_model(t2_model_path))
    head, _ = run_head(batch, stage, None)
    t2_rows = {i: r for r, i in enumerate(t2.light_curves.index) if t2.status[i] == STATUS_OK}
    head_rows = {i: r for r, i in enumerate(head.light_curves.index) if head.status[i] == STATUS_OK}
    common = np.array(sorted(t2_rows.keys() & head_rows.keys()), dtype=np.int64)
    p_t2 = t2.probs[[t2_rows[i] for i in common]].reshape(len(common), len(CLASS_NAMES))
    p_head = head.probs[[head_rows[i] for i in common]].reshape(len(common), -1)
    age = t2.light_curves.age[[t2_rows[i] for i in common]]
    return common, p_t2, in_t2_order(p_head, stage.head.class_names), age


def compare(t2_model_path: str | Path, head_path: str | Path, encoder_path: str | Path | None,
            batch: AlertBatch, label: np.ndarray, object_id: np.ndarray) -> dict:
    """Metrics of t2 and of the head on the alerts both classify, and the head's SN Ia AUC minus t2's."""
    encoder = Encoder.load(encoder_path)
    head = load_head(head_path)
    check_head_fits(head, encoder)
    unknown = [c for c in head.class_names if c not in CLASS_NAMES]
    if unknown:
        raise HeadError(f"head {head.head_id}: class(es) {unknown} are not t2 classes: the comparison scores both "
                        f"on t2's labels ({', '.join(CLASS_NAMES)})")
    rows, p_t2, p_head, age = both_classified(batch, t2_model_path, AstromerStage(encoder, head, False))
    y, ids = label[rows], object_id[rows]
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]

    def scores(p: np.ndarray) -> dict:
        return metrics.summary(y, p, w) | metrics.snia_metrics(y, p, age, w)

    t2_scores, head_scores = scores(p_t2), scores(p_head)
    return {
        "alerts": int(len(rows)), "objects": int(len(counts)), "alerts_in_batch": len(batch),
        "head": str(head_path), "head_id": head.head_id, "head_classes": list(head.class_names),
        "encoder": str(encoder.path), "encoder_sha256": encoder.meta["sha256"],
        "t2": t2_scores, "astromer": head_scores,
        "astromer_minus_t2_snia_auc": head_scores["snia_vs_rest_auc"] - t2_scores["snia_vs_rest_auc"],
        "astromer_minus_t2_macro_f1": head_scores["macro_f1"] - t2_scores["macro_f1"],
        "weighting": "each alert weighted 1/(alerts of its object), on the alerts both classify",
    }


def format_comparison(report: dict) -> str:
    """Two lines: t2 and the head on the same alerts."""
    keys = ("accuracy", "macro_f1", "snia_vs_rest_auc", "log_loss")
    lines = [f"astromer head {report['head_id']} vs t2 on the same {report['alerts']} alerts "
             f"({report['objects']} objects):"]
    for name in ("t2", "astromer"):
        lines.append(f"  {name:<9}" + "  ".join(f"{k}={report[name][k]:.4f}" for k in keys))
    return "\n".join(lines)
