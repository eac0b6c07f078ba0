"""``fink-t2 downstream`` (the Fig. 9 table, plot and t-SNE into docs) and ``fink-t2 finetune`` (one head, saved).

Register with ``add_downstream_parsers(sub)``; handlers take ``args`` and return an exit code.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from fink_t2.astromer.encoder import DEFAULT_ENCODER
from fink_t2.config import REPO_ROOT
from fink_t2.train import downstream

DOCS = REPO_ROOT / "docs"
V0_CHECKPOINT = REPO_ROOT.parent / "shared" / "reference-models" / "astromer-macho-v0"
OUT_DIR = REPO_ROOT / "run" / "downstream"


def _encoder_config(encoder_dir: Path | None):
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train.astromer_network import EncoderConfig

    return enc.encoder_config_of(encoder_dir) if encoder_dir is not None else EncoderConfig()


def build_context(task: downstream.Task, method_keys: list[str], encoder_dir: Path | None, v0_dir: Path | None,
                  seed: int):
    """The :class:`Context` of ``task`` with only the encoders the chosen methods use.

    "ours" is the encoder of ``encoder_dir`` (random weights when None); "random" a randomly
    initialised encoder of the same size (the control: what pretraining adds); the raw LSTM reads
    the same two-band windows.
    """
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train import downstream_methods as methods

    wanted = {methods.METHODS[k].encoder for k in method_keys}
    cfg = _encoder_config(encoder_dir)
    views = {}
    if "ours" in wanted:
        views["ours"] = enc.ours_view(task.curves, encoder_dir, seed)
    if "random" in wanted:
        views["random"] = enc.random_view(task.curves, cfg, seed)
    if "v0" in wanted:
        if v0_dir is None:
            raise ValueError("the v0 methods need --v0 (the published checkpoint folder)")
        views["v0"] = enc.v0_view(task.curves, v0_dir)
    return methods.Context(task, enc.twoband_inputs(task.curves, cfg.max_obs), views)


def _labelled_counts(task: downstream.Task, splits) -> dict[int, dict[str, int]]:
    """Labelled objects per class (training + early-stopping slice) of fold 0, per SPC."""
    return {s.spc: {k: v for k, v in task.class_counts(np.concatenate([s.train, s.val])).items() if v}
            for s in splits if s.fold == 0}


def _tsne_panels(ctx) -> list[tuple]:
    """(title, pooled embeddings, labels, class names) of ours and v0, those already computed."""
    panels = []
    for key in ("ours", "v0"):
        if key in ctx.encoders and ctx.encoders[key]._pooled is not None:
            view = ctx.encoders[key]
            panels.append((f"{ctx.task.name}: {view.label}, mean-pooled", view.pooled, ctx.task.label,
                           ctx.task.class_names))
    return panels


def run(args: argparse.Namespace) -> dict:
    """Every (task, method, fold, SPC) cell; the records, labelled counts and t-SNE panels."""
    from fink_t2.train import downstream_methods as methods  # scipy, scikit-learn: imported when the command runs

    args.methods = args.methods or list(methods.METHODS)
    unknown = [k for k in args.methods if k not in methods.METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {'; '.join(methods.METHODS)}")
    keys = [k for k in args.methods if args.encoder is not None or methods.METHODS[k].encoder != "random"]
    chosen = [methods.METHODS[k] for k in keys]  # without a pretrained encoder, "ours" is the random one
    facts = _facts()  # at the start: the commit and date the cells were computed with
    records, counts, panels = [], {}, []
    for name in args.tasks:
        task = downstream.load_task(name, args.max_objects, args.seed)
        splits = downstream.make_splits(task, args.spc, args.folds, args.seed)
        ctx = build_context(task, keys, args.encoder, args.v0, args.seed)
        counts[name] = _labelled_counts(task, splits)
        for method in chosen:  # records written after each method: a run cut short keeps what it finished
            records += methods.run_cells(ctx, [method], splits, args.seed,
                                         progress=lambda line: print(line, flush=True))
            _write_records(args.out, facts, records, counts)
            _save_panels(args.out / f"embeddings-{name}.npz", _tsne_panels(ctx))
        panels += _tsne_panels(ctx)
    return {"records": records, "class_counts": counts, "panels": panels, "facts": facts}


def _save_panels(path: Path, panels: list[tuple]) -> None:
    """The pooled embeddings of the t-SNE panels, so ``--from-records`` can draw them again."""
    arrays = {}
    for k, (title, x, y, names) in enumerate(panels):
        arrays.update({f"title{k}": np.array(title), f"x{k}": x, f"y{k}": y, f"names{k}": np.array(names)})
    np.savez_compressed(path, **arrays)


def load_panels(path: Path) -> list[tuple]:
    """The panels saved by :func:`_save_panels` (empty when the file is absent)."""
    if not path.is_file():
        return []
    with np.load(path) as z:
        n = sum(1 for key in z.files if key.startswith("title"))
        return [(str(z[f"title{k}"]), z[f"x{k}"], z[f"y{k}"], tuple(z[f"names{k}"].tolist())) for k in range(n)]


def majority_macro_f1(task: downstream.Task, seed: int = 0) -> float:
    """Macro-F1 of answering the most common training class for every test object (fold 0): the floor."""
    from fink_t2.train import metrics

    split = downstream.make_splits(task, (max(downstream.SPC_VALUES),), 1, seed)[0]
    majority = np.bincount(task.label[~np.isin(np.arange(len(task)), split.test)]).argmax()
    probs = np.zeros((len(split.test), len(task.class_names)))
    probs[:, majority] = 1.0
    return metrics.macro_f1(task.label[split.test], probs)


def merge_records(runs: list[dict]) -> dict:
    """Records of several runs: a later run's cell (task, method, fold, SPC) replaces an earlier one's."""
    cells, counts = {}, {}
    for saved in runs:
        for r in saved["records"]:
            cells[(r["task"], r["method_key"], r["fold"], r["spc"])] = r
        counts.update({t: {int(k): v for k, v in c.items()} for t, c in saved["class_counts"].items()})
    facts = dict(runs[-1]["facts"])
    if len(runs) > 1:
        facts["command"] = "` then `".join(saved["facts"]["command"] for saved in runs)
        facts["commit"] = ", ".join(dict.fromkeys(saved["facts"]["commit"] for saved in runs))
    return {"records": list(cells.values()), "class_counts": counts, "panels": [], "facts": facts}


def _facts() -> dict:
    from fink_t2.train import downstream_report as report

    return report.run_facts("fink-t2 " + " ".join(shlex.quote(a) for a in sys.argv[1:]))


def _write_records(out: Path, facts: dict, records: list[dict], counts: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.json"
    path.write_text(json.dumps({"facts": facts, "records": records, "class_counts": counts}, indent=1))
    return path


def cmd_downstream(args: argparse.Namespace) -> int:
    from fink_t2.train import downstream_report as report

    if args.from_records:  # re-render the docs of finished (or cut) runs (t-SNE from their saved embeddings)
        result = merge_records([json.loads(p.read_text()) for p in args.from_records])
        for path in args.from_records:
            result["panels"] += [p for f in sorted(path.parent.glob("embeddings-*.npz")) for p in load_panels(f)]
        facts = result["facts"]
    else:
        result = run(args)
        facts = result["facts"]
    summary = report.summarise(result["records"])
    tasks = list(dict.fromkeys(r["task"] for r in result["records"]))
    reference = {name: majority_macro_f1(downstream.load_task(name, args.max_objects, args.seed), args.seed)
                 for name in tasks}
    figures = [report.plot_curves(summary, args.docs / "astromer-downstream.png")]
    if result["panels"] and not args.no_tsne:
        figures.append(report.plot_embeddings(result["panels"], args.docs / "astromer-embeddings.png", args.seed))
    notes = report.notes(args.encoder, reference)
    doc = report.write_markdown(args.docs / "astromer-downstream.md", summary, facts, notes,
                                result["class_counts"], [str(f) for f in figures])
    records = "" if args.from_records else f", {args.out / 'records.json'}"
    print(f"wrote {doc}, " + ", ".join(str(f) for f in figures) + records)
    return 0


def add_downstream_parsers(subparsers) -> None:
    """Register ``downstream`` and ``finetune``."""
    p = subparsers.add_parser("downstream", help="few-label classification table (ASTROMER Fig. 9) into docs")
    p.add_argument("--tasks", nargs="+", choices=downstream.TASKS, default=list(downstream.TASKS))
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="default: all (names: `fink_t2.train.downstream_methods.METHODS`, listed in docs/astromer-downstream.md)")
    p.add_argument("--spc", nargs="+", type=int, default=list(downstream.SPC_VALUES),
                   help="labelled objects per class (default %(default)s)")
    p.add_argument("--folds", type=int, default=downstream.N_FOLDS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", type=Path, help="our pretraining output folder (pretrain.json + best.weights.h5); "
                   "default: none, 'ours' is then a randomly initialised two-band encoder")
    p.add_argument("--v0", type=Path, default=V0_CHECKPOINT, help="published ASTROMER v0 checkpoint folder")
    p.add_argument("--max-objects", type=int, help="seeded subset of objects per task (quick runs)")
    p.add_argument("--docs", type=Path, default=DOCS, help="folder of the .md and .png written")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="folder of records.json")
    p.add_argument("--no-tsne", action="store_true")
    p.add_argument("--from-records", type=Path, nargs="+", help="write the docs from these records.json (later "
                   "files replace the same cells of earlier ones) instead of running")
    p.set_defaults(handler=cmd_downstream)
    add_finetune_parser(subparsers)


# ----------------------------------------------------------------------------------------------
# fink-t2 finetune
# ----------------------------------------------------------------------------------------------

LIGHT_CURVE_COLUMNS = ("object_id", "mjd", "band", "mag", "magerr")


def read_labelled_csv(light_curves: Path, labels: Path) -> tuple[object, np.ndarray, tuple[str, ...]]:
    """(Corpus, label index per curve, class names) from a light-curve table and an object_id,label table.

    Light curves: one row per observation, ``band`` g or r (other bands dropped); objects without a
    label, or with fewer than ``downstream.MIN_POINTS`` points, are dropped.
    """
    import pandas as pd

    from fink_t2.contract import ASTROMER_BAND_INDEX
    from fink_t2.train import pretrain_data

    table = pd.read_csv(light_curves, dtype={"object_id": str, "band": str})
    missing = set(LIGHT_CURVE_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{light_curves}: missing columns {sorted(missing)} (need {', '.join(LIGHT_CURVE_COLUMNS)})")
    named = pd.read_csv(labels, dtype={"object_id": str, "label": str})
    if not {"object_id", "label"} <= set(named.columns):
        raise ValueError(f"{labels}: need columns object_id, label")
    label_of = dict(zip(named["object_id"], named["label"]))
    table = table[table["band"].isin(list(ASTROMER_BAND_INDEX)) & table["object_id"].isin(label_of)]
    table = table.assign(band=table["band"].map(ASTROMER_BAND_INDEX), source=Path(light_curves).name)
    curves = pretrain_data.assemble([table], excluded=set(), min_points=downstream.MIN_POINTS)
    if len(curves) == 0:
        raise ValueError(f"{light_curves}: no labelled object with ≥ {downstream.MIN_POINTS} g/r points")
    class_names = tuple(sorted({label_of[oid] for oid in curves.object_id}))
    label = np.array([class_names.index(label_of[oid]) for oid in curves.object_id], dtype=np.int64)
    return curves, label, class_names


def _task_data(args) -> tuple[object, np.ndarray, tuple[str, ...]]:
    """The labelled curves of ``--task`` (BTS: its train split only) or of ``--labels`` + ``--light-curves``."""
    if args.task is not None:
        task = downstream.load_task(args.task)
        keep = ~task.fixed_test if task.fixed_test is not None else np.ones(len(task), bool)
        return task.curves.subset(keep), task.label[keep], task.class_names
    if args.labels is None or args.light_curves is None:
        raise ValueError("give --task, or --labels and --light-curves")
    return read_labelled_csv(args.light_curves, args.labels)


def _encoder_view(curves, encoder: Path):
    """The view of ``encoder``: a v0 checkpoint folder (``conf.json``) or a pretraining folder (``pretrain.json``)."""
    from fink_t2.train import downstream_encoders as enc

    if (encoder / "conf.json").is_file():
        return enc.v0_view(curves, encoder)
    if (encoder / enc.PRETRAIN_STATE).is_file():
        return enc.ours_view(curves, encoder)
    raise ValueError(f"{encoder}: neither a v0 checkpoint (conf.json) nor a pretraining folder (pretrain.json)")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


#: BTS task class → t2 class of the same objects (``contract.CLASS_NAMES``), so ``t2_snia`` and the SN Ia
#: filter work with a BTS head; "SLSN" (SLSN-I and -II) and "other" have no t2 equivalent and keep their names.
T2_NAME_OF_BTS = {"SN Ia": "SNIa", "SN II": "SNII", "SN Ibc": "SNIbc"}
STREAM_HEAD = "head.npz"


def stream_class_names(task: str | None, class_names: tuple[str, ...]) -> list[str]:
    """The class names a stream head is written with: t2's names for the BTS task's classes that have one."""
    return [T2_NAME_OF_BTS.get(c, c) if task == "bts" else c for c in class_names]


def _train_val(label: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of the labelled objects into training and early-stopping rows."""
    rng = np.random.default_rng(seed)
    parts = [downstream._labelled(rng.permutation(np.flatnonzero(label == c)), len(label), downstream.VAL_FRACTION)
             for c in np.unique(label)]
    return tuple(np.sort(np.concatenate([p[i] for p in parts])) for i in (0, 1))


def _fit_keras(args, curves, label, class_names, train, val) -> tuple[object, object, dict]:
    """Encoder of a pretraining / v0 folder + the ``--head`` MLP, trained on the frozen encoder and then,
    with ``--finetune``, end to end: the model, its inputs and what the JSON says of it (no stream head:
    its embeddings are tf_keras's). A mean head's z-scoring is in the JSON (``zscore_mean``, ``zscore_scale``)."""
    from fink_t2.train import downstream_heads as heads
    from fink_t2.train import downstream_methods as methods

    view = _encoder_view(curves, args.encoder)
    head = methods.train_head(view, args.head, label, len(class_names), train, val, args.seed)
    if args.finetune:
        model = methods.fine_tune(view, head, label, train, val, args.seed)
    else:
        model = heads.finetuned(view.make_encoder(), head.model, head.pooling, head.mean, head.scale)
    reason = ("the stream runs only dense heads on mean-pooled embeddings of a frozen encoder"
              if args.finetune or args.head != "mean" else
              "the embeddings came from a tf_keras encoder, not the .tflite the stream runs: give --encoder a .tflite")
    about = {"encoder_label": view.label, "inputs": sorted(view.inputs),
             "max_obs": int(view.inputs["times"].shape[1]), "stream_head": None, "no_stream_head_because": reason}
    if head.pooling == "mean":
        about |= {"zscore_mean": head.mean.tolist(), "zscore_scale": head.scale.tolist()}
    return model, view.inputs, about


def _fit_on_tflite(args, curves, label, class_names, train, val) -> tuple[object, np.ndarray, dict]:
    """The pooled MLP on z-scored LiteRT pooled embeddings of the ``.tflite`` ``--encoder`` (the stream's
    numbers): the model, its z-scored inputs and its JSON facts; the head is also saved as ``STREAM_HEAD``."""
    from fink_t2.astromer.encoder import Encoder
    from fink_t2.astromer.head import save_head
    from fink_t2.train import downstream_encoders as enc
    from fink_t2.train import downstream_heads as heads
    from fink_t2.train.downstream_methods import fit_pooled_head

    if args.finetune or args.head != "mean":
        raise ValueError("a .tflite encoder is frozen and gives mean-pooled embeddings: --head mean without "
                         "--finetune (attention or fine-tuning need a pretraining folder)")
    encoder = Encoder.load(args.encoder)
    pooled = encoder.pooled(encoder.windows(enc.light_curves(curves)))
    head = fit_pooled_head(pooled, label, len(class_names), train, val, args.seed)
    model, x = head.model, ((pooled - head.mean) / head.scale).astype(np.float32)
    layers, arrays = heads.dense_head_layers(model, head.mean, head.scale)
    head = save_head(args.out / STREAM_HEAD, layers, arrays, head_id=f"{args.out.name}-{encoder.encoder_id}",
                     class_names=stream_class_names(args.task, class_names), encoder_sha256=encoder.meta["sha256"],
                     encoder_id=encoder.encoder_id, trained_on=_trained_on(args))
    about = {"encoder_label": encoder.encoder_id, "encoder_sha256": encoder.meta["sha256"], "inputs": ["pooled"],
             "max_obs": encoder.max_obs, "stream_head": head.name}
    return model, x, about


def _trained_on(args) -> str:
    return f"task {args.task}" if args.task else f"{args.light_curves} labelled by {args.labels}"


def _rows(inputs, index: np.ndarray):
    return inputs[index] if isinstance(inputs, np.ndarray) else {k: v[index] for k, v in inputs.items()}


def cmd_finetune(args: argparse.Namespace) -> int:
    """Train one classifier (encoder + pooled MLP head) on labelled light curves; save weights + JSON, and
    with a .tflite encoder (frozen, mean-pooled) the stream head ``head.npz`` + ``head.json``."""
    from fink_t2.train import downstream_heads as heads
    from fink_t2.train import metrics

    curves, label, class_names = _task_data(args)
    train, val = _train_val(label, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    fit = _fit_on_tflite if args.encoder.suffix == ".tflite" else _fit_keras
    model, inputs, about = fit(args, curves, label, class_names, train, val)
    val_f1 = (metrics.macro_f1(label[val], heads.predict_proba(model, _rows(inputs, val))) if len(val)
              else float("nan"))
    weights = args.out / "classifier.weights.h5"
    model.save_weights(str(weights))
    meta = {"classes": list(class_names), "encoder": str(args.encoder), "head": args.head,
            "finetuned_encoder": bool(args.finetune), **about, "n_train": len(train), "n_val": len(val),
            "per_class": {class_names[c]: int((label == c).sum()) for c in np.unique(label)},
            "val_macro_f1": val_f1, "weights": weights.name, "weights_sha256": _sha256(weights),
            **_facts()}
    (args.out / "classifier.json").write_text(json.dumps(meta, indent=1) + "\n")
    stream = (f"stream head {args.out / about['stream_head']}" if about["stream_head"]
              else f"no stream head ({about['no_stream_head_because']})")
    print(f"wrote {weights} and classifier.json, {stream}: {len(train)} train / {len(val)} validation objects, "
          f"validation macro-F1 {val_f1:.3f}")
    return 0


def add_finetune_parser(subparsers) -> None:
    """Register ``finetune``."""
    p = subparsers.add_parser("finetune", help="train a classifier head on an encoder's embeddings, save it")
    p.add_argument("--encoder", type=Path, default=DEFAULT_ENCODER,
                   help="a .tflite encoder (default: the shipped one; also writes the stream head head.npz), "
                   "a pretraining folder (pretrain.json + best.weights.h5) or a v0 checkpoint folder (conf.json)")
    p.add_argument("--task", choices=downstream.TASKS, help="built-in labels (BTS: its train split)")
    p.add_argument("--labels", type=Path, help="CSV object_id,label")
    p.add_argument("--light-curves", type=Path, help="CSV " + ",".join(LIGHT_CURVE_COLUMNS) + " (band g or r)")
    p.add_argument("--head", choices=("mean", "attention"), default="mean", help="pooling before the MLP")
    p.add_argument("--finetune", action="store_true", help="train the encoder too (default: frozen)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="folder: classifier.weights.h5 + classifier.json (+ head.npz, head.json)")
    p.set_defaults(handler=cmd_finetune)
