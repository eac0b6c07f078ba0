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
    panels = []
    for key in ("ours", "v0"):
        if key in ctx.encoders:
            view = ctx.encoders[key]
            panels.append((f"{ctx.task.name}: {view.label}, mean-pooled", view.pooled, ctx.task.label,
                           ctx.task.class_names))
    return panels


def run(args: argparse.Namespace) -> dict:
    """Every (task, method, fold, SPC) cell; the records, labelled counts and t-SNE panels."""
    from fink_t2.train import downstream_methods as methods

    keys = [k for k in args.methods if args.encoder is not None or methods.METHODS[k].encoder != "random"]
    chosen = [methods.METHODS[k] for k in keys]  # without a pretrained encoder, "ours" is the random one
    records, counts, panels = [], {}, []
    for name in args.tasks:
        task = downstream.load_task(name, args.max_objects, args.seed)
        splits = downstream.make_splits(task, args.spc, args.folds, args.seed)
        ctx = build_context(task, keys, args.encoder, args.v0, args.seed)
        records += methods.run_cells(ctx, chosen, splits, args.seed, progress=lambda line: print(line, flush=True))
        counts[name] = _labelled_counts(task, splits)
        panels += _tsne_panels(ctx)
    return {"records": records, "class_counts": counts, "panels": panels}


def cmd_downstream(args: argparse.Namespace) -> int:
    from fink_t2.train import downstream_report as report

    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    facts = report.run_facts("fink-t2 " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    (args.out / "records.json").write_text(json.dumps({"facts": facts, "records": result["records"]}, indent=1))
    summary = report.summarise(result["records"])
    figures = [report.plot_curves(summary, args.docs / "astromer-downstream.png")]
    if result["panels"] and not args.no_tsne:
        figures.append(report.plot_embeddings(result["panels"], args.docs / "astromer-embeddings.png", args.seed))
    notes = report.notes(args.encoder)
    doc = report.write_markdown(args.docs / "astromer-downstream.md", summary, facts, notes,
                                result["class_counts"], [str(f) for f in figures])
    print(f"wrote {doc}, " + ", ".join(str(f) for f in figures) + f", {args.out / 'records.json'}")
    return 0


def add_downstream_parsers(subparsers) -> None:
    """Register ``downstream`` and ``finetune``."""
    from fink_t2.train.downstream_methods import METHODS

    p = subparsers.add_parser("downstream", help="few-label classification table (ASTROMER Fig. 9) into docs")
    p.add_argument("--tasks", nargs="+", choices=downstream.TASKS, default=list(downstream.TASKS))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), metavar="METHOD",
                   help="default: all of " + "; ".join(METHODS))
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
    p.set_defaults(handler=cmd_downstream)
