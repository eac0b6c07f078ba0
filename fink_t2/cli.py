"""``fink-t2``: the command line. Thin: parses arguments and calls the package."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fink_t2.tools import bench, lsst_night
from fink_t2.spark import cluster
from fink_t2.kafka import broker
from fink_t2.kafka import replay
from fink_t2.alerts.batch import records_to_batch
from fink_t2.config import CONF_TEMPLATES, DEFAULT_CONF, ConfigError, load_config
from fink_t2.kafka.broker import BrokerError, MissingJarsError
from fink_t2.kafka.security import KafkaAuthenticationError
from fink_t2.science.classify import OUTPUT_COLUMNS, classify, classify_batch
from fink_t2.science.model import ModelError, load_model
from fink_t2.alerts.sources import ARCHIVE_INCOMPLETE, AlertInput, InputError, iter_alert_inputs
from fink_t2.tools.extras import MissingExtraError, require_extra
from fink_t2.train.cli import add_train_parsers
from fink_t2.train.tf_setup import MissingTrainingStack

READ_CHUNK = 2048  # alerts decoded and classified per step


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="alert", disable=not sys.stderr.isatty())


def classify_paths(paths: Sequence[str], model_path: str | None = None) -> pd.DataFrame:
    """Classify every alert under ``paths``: one row per alert, plus a ``source`` column."""
    model = load_model(model_path)
    frames = []
    chunk: list[AlertInput] = []

    def flush() -> None:
        if not chunk:
            return
        if chunk[0].payload is not None:
            out = classify([item.payload for item in chunk], model)
        else:
            out = classify_batch(records_to_batch([item.record for item in chunk], [item.error for item in chunk]),
                                 model)
        out["source"] = [item.source for item in chunk]
        frames.append(out)
        chunk.clear()

    with _progress(None, "classify") as bar:
        for item in iter_alert_inputs(paths):
            if chunk and (item.payload is None) != (chunk[0].payload is None):
                flush()
            chunk.append(item)
            if len(chunk) >= READ_CHUNK:
                bar.update(len(chunk))
                flush()
        bar.update(len(chunk))
        flush()
    if not frames:
        return pd.DataFrame(columns=[*OUTPUT_COLUMNS, "source"])
    return pd.concat(frames, ignore_index=True)


def summary_table(results: pd.DataFrame, seconds: float) -> str:
    """Counts per status and per class, and the throughput, as text."""
    lines = [f"{len(results)} alerts in {seconds:.2f} s ({len(results) / max(seconds, 1e-9):,.0f} alerts/s)", ""]
    lines.append("status counts:")
    for status, count in results["t2_status"].value_counts().items():
        lines.append(f"  {status:<45} {count:>7}")
    classified = results[results["t2_status"] == "ok"]
    if len(classified):
        lines.append("")
        lines.append("class counts (ok alerts):")
        for name, count in classified["t2_class"].value_counts().items():
            lines.append(f"  {name:<45} {count:>7}")
    return "\n".join(lines)


def write_results(results: pd.DataFrame, out: Path) -> None:
    """Write results as Parquet or JSON lines (chosen by the file suffix)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        results.to_parquet(out, index=False)
    elif out.suffix in (".jsonl", ".json"):
        results.to_json(out, orient="records", lines=True)
    else:
        raise ValueError(f"--out must end with .parquet or .jsonl: {out}")


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify, write, summarise; exit 1 when an input was incomplete (alerts are missing)."""
    start = time.perf_counter()
    results = classify_paths(args.paths, args.model)
    seconds = time.perf_counter() - start
    if args.out:
        write_results(results, Path(args.out))
    print(summary_table(results, seconds))
    incomplete = results.loc[results["t2_status"].str.startswith(f"error:{ARCHIVE_INCOMPLETE}"), "t2_status"]
    for status in incomplete:
        print(f"fink-t2: error: incomplete input, the alerts above are those it held: {status[len('error:'):]}",
              file=sys.stderr)
    return 1 if len(incomplete) else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from fink_t2.tools.plot import plot_alert

    plot_alert(args.path, args.candid, Path(args.out), args.model)
    print(f"wrote {args.out}")
    return 0


def resolve_encoder(path: str | None):
    """The encoder of ``--encoder``: a .tflite (metadata beside it), a v0 checkpoint directory (converted
    through TensorFlow once, cached), or the shipped two-band encoder when None."""
    from fink_t2.astromer.encoder import DEFAULT_ENCODER, Encoder, EncoderError

    if path is None and not DEFAULT_ENCODER.is_file():
        raise EncoderError(f"the shipped encoder {DEFAULT_ENCODER.name} is not in this install: pass --encoder "
                           "FILE.tflite or a v0 checkpoint directory")
    if path is not None and Path(path).is_dir():
        try:
            from fink_t2.train.astromer_export import v0_checkpoint_to_tflite
        except ImportError as exc:
            raise MissingTrainingStack(f"--encoder {path} (a v0 checkpoint directory) is converted through "
                                       "TensorFlow: pip install 'fink_t2[train]' (make train-venv)") from exc
        path = v0_checkpoint_to_tflite(path)
    return Encoder.load(path)


def cmd_embed(args: argparse.Namespace) -> int:
    """Pooled embeddings of every object of INPUT into --out; exit 1 when an archive was incomplete or
    no object could be embedded."""
    from fink_t2.astromer.embed import embed_path, write_embeddings

    encoder = resolve_encoder(args.encoder)
    table = embed_path(args.input, encoder, args.band)
    write_embeddings(table, Path(args.out))
    statuses = pd.Series(table.column("status").to_pylist(), dtype=object)
    print(f"{len(table)} objects, encoder {encoder.encoder_id}: " +
          ", ".join(f"{status} {count}" for status, count in statuses.value_counts().sort_index().items()))
    incomplete = statuses[statuses.str.startswith(f"error:{ARCHIVE_INCOMPLETE}")]
    for status in incomplete:
        print(f"fink-t2: error: incomplete input, the objects above are those it held: {status[len('error:'):]}",
              file=sys.stderr)
    return 1 if len(incomplete) or (len(statuses) and not (statuses == "ok").any()) else 0


def _add_embed_parser(sub) -> None:
    p = sub.add_parser("embed", help="pooled ASTROMER embeddings of alert files or a CSV light-curve table")
    p.add_argument("input", help="alert file/folder (.avro, .parquet, .tar.gz) or CSV: object_id, mjd, band, mag, magerr")
    p.add_argument("--out", required=True, help="FILE.parquet: object_id, candid, status, n_obs, encoder, embedding")
    p.add_argument("--encoder", help="FILE.tflite (metadata beside it) or a v0 checkpoint directory; "
                                     "default: the shipped two-band encoder")
    p.add_argument("--band", help="only the observations of this band (a single-band v0 encoder: which rows)")
    p.set_defaults(handler=cmd_embed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fink-t2", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify alert files (.avro, .parquet, .tar.gz)")
    p.add_argument("paths", nargs="+", help="files or directories (searched recursively)")
    p.add_argument("--model", help="TFLite model file (metadata JSON beside it); default: shipped model")
    p.add_argument("--out", help="write results to FILE.parquet or FILE.jsonl")
    p.set_defaults(handler=cmd_classify)

    p = sub.add_parser("plot", help="plot one alert's light curve, GP and class probabilities")
    p.add_argument("path", help="alert file or directory")
    p.add_argument("--candid", type=int, required=True)
    p.add_argument("--out", required=True, help="PNG file")
    p.add_argument("--model")
    p.set_defaults(handler=cmd_plot, extra="plot")

    _add_config_parser(sub)
    _add_schema_parser(sub)
    _add_consume_parser(sub)
    _add_stream_commands(sub)
    _add_embed_parser(sub)
    add_train_parsers(sub)
    _add_downstream_commands(sub)
    return parser


def _add_downstream_commands(sub) -> None:
    """``downstream`` and ``finetune`` (ASTROMER few-label experiments; TensorFlow imported when they run)."""
    from fink_t2.train.downstream_cli import add_downstream_parsers

    add_downstream_parsers(sub)


def cmd_stream(args: argparse.Namespace) -> int:
    from fink_t2.spark.stream import run

    config = load_config(args.conf).with_bootstrap(args.bootstrap).with_run_files(args.checkpoint_dir,
                                                                                  args.progress_jsonl)
    run(config, once=args.once, timeout=args.timeout, report=lambda stats: print(stats.summary(), flush=True))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fink_t2.tools.demo import run_demo

    run_demo(load_config(args.conf), alerts=args.alerts, allow_remote_broker=args.allow_remote_broker)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "template":
        print(CONF_TEMPLATES[args.target].read_text(), end="")
        return 0
    config = load_config(args.target)
    print(f"{args.target}: valid; bootstrap {config.kafka.bootstrap_servers}, "
          f"reads {config.input.subscribe_pattern!r}, writes {', '.join(config.output.topics())}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the enriched schema (the .avsc the job publishes for such alerts) or its fingerprint."""
    from fink_t2.alerts.ztf_schemas import ztf_writer_schema
    from fink_t2.kafka.messages import enriched_schema

    schema = enriched_schema(ztf_writer_schema(args.ztf_version))
    print(schema.fingerprint if args.fingerprint else schema.json.decode())
    return 0


def _add_schema_parser(sub) -> None:
    from fink_t2.alerts.ztf_schemas import LATEST_ZTF_VERSION, ztf_schema_versions

    p = sub.add_parser("schema", help="print the enriched-alert Avro schema (JSON) of a ZTF schema version",
                       description="The ZTF writer schema of that version with the t2 fields appended: the "
                                   "<fingerprint>.avsc the job publishes for such alerts with [output] "
                                   "enriched_format = \"schemaless\" (also the schema container messages embed).")
    p.add_argument("--ztf-version", default=LATEST_ZTF_VERSION, choices=ztf_schema_versions(),
                   help=f"ZTF alert schema version (default {LATEST_ZTF_VERSION})")
    p.add_argument("--fingerprint", action="store_true",
                   help="print only its CRC-64-AVRO fingerprint (the avro.schema.crc64 header value)")
    p.set_defaults(handler=cmd_schema)


def cmd_consume(args: argparse.Namespace) -> int:
    """Print one line per message of a topic, then a count per kind; optionally plot them."""
    from collections import Counter

    from fink_t2.kafka.consume import consume

    if args.plot:
        require_extra("plot", "`fink-t2 consume --plot`")
    config = load_config(args.conf).with_bootstrap(args.bootstrap)
    schema_dir = Path(args.schema_dir) if args.schema_dir else config.schema_dir()
    consumed = []
    for item in consume(config.kafka, args.topic, args.max, args.idle_timeout, schema_dir, args.allow_remote_broker):
        print(item.line(), flush=True)
        consumed.append(item)
    kinds = Counter(item.kind for item in consumed)
    print(f"# {len(consumed)} messages from {args.topic}: "
          + (", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"))
    if args.plot:
        from fink_t2.tools.plot import plot_consumed

        plot_consumed([item.fields for item in consumed if item.kind in ("enriched", "score")], Path(args.plot),
                      args.topic)
        print(f"wrote {args.plot}")
    return 0


def _add_consume_parser(sub) -> None:
    from fink_t2.kafka.consume import DEFAULT_IDLE_SECONDS

    p = sub.add_parser("consume", help="print (and plot) what an output topic holds, one line per alert",
                       description="Reads TOPIC from the earliest offset in a consumer group of its own (commits "
                                   "nothing) and decodes each message whatever its format: enriched container, "
                                   "schemaless enriched (with its .avsc from --schema-dir), JSON score, dead letter.")
    p.add_argument("topic")
    p.add_argument("--conf", default=str(DEFAULT_CONF), help="TOML config: [kafka] and the default schema dir")
    p.add_argument("--bootstrap", help="override [kafka] bootstrap_servers")
    p.add_argument("--max", type=int, default=None, help="stop after N messages")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_SECONDS,
                   help=f"stop after this many seconds without a message (default {DEFAULT_IDLE_SECONDS:g})")
    p.add_argument("--schema-dir", help="folder of the published <fingerprint>.avsc (default: the config's)")
    p.add_argument("--plot", help="write FILE.png: alerts per class and P(SNIa) (needs the plot extra)")
    p.add_argument("--allow-remote-broker", action="store_true", help="read from a broker that is not on loopback")
    p.set_defaults(handler=cmd_consume)


def _add_config_parser(sub) -> None:
    p = sub.add_parser("config", help="print a config template, or check a config file",
                       description="`config template local|cluster` prints a packaged template (start a config "
                                   "from it); `config check FILE` validates every key and prints the problems.")
    actions = p.add_subparsers(dest="action", required=True)
    template = actions.add_parser("template", help="print a packaged config template")
    template.add_argument("target", choices=sorted(CONF_TEMPLATES), metavar="NAME", help="local or cluster")
    check = actions.add_parser("check", help="validate a TOML config (exit 2 with every problem found)")
    check.add_argument("target", nargs="?", default=str(DEFAULT_CONF), metavar="FILE")
    p.set_defaults(handler=cmd_config)


def _add_stream_commands(sub) -> None:
    p = sub.add_parser("stream", help="run the Kafka → Spark → Kafka streaming job")
    p.add_argument("--conf", default=str(DEFAULT_CONF), help="TOML config (default: packaged fink_t2/conf/local.toml)")
    p.add_argument("--once", action="store_true", help="process what is in the topics, then exit (availableNow)")
    p.add_argument("--bootstrap", help="override [kafka] bootstrap_servers")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--checkpoint-dir", help="override [checkpoint] dir")
    p.add_argument("--progress-jsonl", metavar="FILE",
                   help="override [monitoring] progress_jsonl (per-micro-batch JSON lines; '-' stderr, '' off)")
    p.set_defaults(handler=cmd_stream, extra="stream")

    p = sub.add_parser("demo", help="broker + replay of the sample alerts + stream --once + summary")
    p.add_argument("--conf", default=str(DEFAULT_CONF))
    p.add_argument("--alerts", nargs="+", help="replay these alert files/folders instead of data/alerts")
    p.add_argument("--allow-remote-broker", action="store_true",
                   help="run even if [kafka] bootstrap_servers is not on loopback (the demo deletes its topics there)")
    p.set_defaults(handler=cmd_demo, extra=("plot", "stream"))

    broker.add_kafka_parser(sub)
    replay.add_replay_parser(sub)
    lsst_night.add_lsst_night_arguments(bench.add_bench_parser(sub))
    cluster.add_cluster_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        extras = getattr(args, "extra", None) or ()  # the optional dependencies of this command, before it starts
        for extra in (extras,) if isinstance(extras, str) else extras:
            require_extra(extra, f"`fink-t2 {args.command}`")
        return int(args.handler(args) or 0)
    except (InputError, ModelError, ConfigError, MissingJarsError, MissingTrainingStack, MissingExtraError,
            cluster.ClusterError, BrokerError, KafkaAuthenticationError, ValueError) as exc:
        print(f"fink-t2: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
