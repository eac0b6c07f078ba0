"""``fink-t2 bench``: throughput of every stage on one pinned core, the reference path in the
same run, and the end-to-end Kafka → Spark → Kafka job.

All figures are alerts per second per core unless named otherwise. "classified" rates count
only the alerts that passed the cuts (the GP + model work); "all" rates count every alert.
The reference path is what the deployed Fink module does per alert: one GP fit per alert
(george when installed, else the equivalent scipy fit) and one interpreter invoke per alert.
"""
from __future__ import annotations

import io
import json
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import fastavro
import numpy as np

from fink_t2.alerts.decode import decode_payloads
from fink_t2.alerts.container import build_single_record_container, parse_container
from fink_t2.science.classify import STATUS_OK, run_gp, classify
from fink_t2.config import REPO_ROOT, Config, KafkaConf, git_commit, load_config
from fink_t2.contract import ASTROMER_SHIPPED_ENCODER_ID, BANDS, ZTF_WAVELENGTH_A
from fink_t2.kafka.messages import enrich_alert, score_message
from fink_t2.readme_blocks import write_readme_block
from fink_t2.science.lightcurve import build_light_curves, cut_reasons
from fink_t2.science.model import LOAD_LOG_ENV, MODELS_DIR, load_model
from fink_t2.science.model_input import band_wavelengths, build_input, contract_of, model_grid

DEFAULT_ALERTS = REPO_ROOT / "data" / "alerts"
QUICK_N, FULL_N = 2_000, 20_000
QUICK_REFERENCE, FULL_REFERENCE = 60, 300  # classified alerts timed on the (slow) reference path


# --------------------------------------------------------------------------- inputs


def load_messages(paths: Sequence[str | Path]) -> list[bytes]:
    """One Kafka-style message (single-alert Avro container) per alert under ``paths``."""
    from fink_t2.kafka.replay import iter_alert_messages

    return [m.value for m in iter_alert_messages(paths)]


def replicate(messages: Sequence[bytes], n: int, candid_base: int = 10**18) -> list[bytes]:
    """``n`` messages cycling over ``messages``, copy k with candid ``candid_base + k`` (the default
    base is outside ZTF's range: never collides with a real alert)."""
    records, schemas = [], []
    for payload in messages:
        reader = fastavro.reader(io.BytesIO(payload))
        records.append(next(reader))
        schemas.append((fastavro.parse_schema(reader.writer_schema), parse_container(payload)))
    out = []
    for k in range(n):
        i = k % len(records)
        record = dict(records[i])
        candid = candid_base + k
        record["candid"] = candid
        record["candidate"] = dict(record["candidate"]) | {"candid": candid}
        schema, container = schemas[i]
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema, record)
        out.append(build_single_record_container(container.schema_json, container.sync, body.getvalue()))
    return out


# --------------------------------------------------------------------------- timing helpers


@contextmanager
def one_pinned_core() -> Iterator[int]:
    """Within the block: this process on its last allowed core, single-threaded BLAS."""
    from threadpoolctl import threadpool_limits

    allowed = os.sched_getaffinity(0)
    core = max(allowed)
    os.sched_setaffinity(0, {core})
    try:
        with threadpool_limits(1):
            yield core
    finally:
        os.sched_setaffinity(0, allowed)


def best_rate(count: int, work: Callable[[], object], repeats: int = 3) -> float:
    """count / best wall time of ``work`` over ``repeats`` runs (items per second)."""
    best = min(_timed(work) for _ in range(repeats))
    return count / best if best > 0 else float("inf")


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- stages


@dataclass
class StageFigures:
    """Alerts/s on one core for each stage; GP, model input and inference per classified alert."""

    decode: float
    cuts: float
    gp: float
    model_input: float
    inference: float
    output_encoding: float
    classify_all: float
    classify_classified: float
    n_alerts: int
    n_classified: int


def measure_stages(payloads: list[bytes], repeats: int) -> StageFigures:
    """Time each stage of ``classify`` separately and the whole, on the same alerts."""
    model = load_model()
    batch = decode_payloads(payloads)
    reasons = cut_reasons(batch)
    selected = np.array([i for i, r in enumerate(reasons) if r is None and batch.error[i] is None], dtype=np.int64)
    lcs = build_light_curves(batch, selected)
    wavelengths = band_wavelengths(BANDS, ZTF_WAVELENGTH_A)
    grid = model_grid(contract_of(model.meta), lcs.t, lcs.mask)
    _, means, _ = run_gp(lcs, wavelengths, grid)
    x = build_input(model.meta, means, grid, lcs.age)
    results = classify(payloads, model)
    rows = results.to_dict("records")
    n, k = len(payloads), max(len(lcs), 1)

    def encode_outputs() -> None:
        for payload, row in zip(payloads, rows):
            enrich_alert(payload, row)
            score_message(row)

    whole = best_rate(n, lambda: classify(payloads, model), repeats)
    return StageFigures(
        decode=best_rate(n, lambda: decode_payloads(payloads), repeats),
        cuts=best_rate(n, lambda: build_light_curves(batch, np.array(
            [i for i, r in enumerate(cut_reasons(batch)) if r is None], dtype=np.int64)), repeats),
        gp=best_rate(k, lambda: run_gp(lcs, wavelengths, grid), repeats),
        model_input=best_rate(k, lambda: build_input(model.meta, means, grid, lcs.age), repeats),
        inference=best_rate(k, lambda: model.predict(x), repeats),
        output_encoding=best_rate(n, encode_outputs, repeats),
        classify_all=whole,
        classify_classified=whole * len(lcs) / n,
        n_alerts=n,
        n_classified=int((results["t2_status"] == STATUS_OK).sum()),
    )


def measure_embeddings(payloads: list[bytes], encoder_path: str | None, repeats: int) -> dict:
    """The ASTROMER stage on the same alerts: the encoder alone per classified alert (light curves →
    windows → pooled embeddings), and the whole ``classify`` with embeddings on (t2 + encoder)."""
    from fink_t2.astromer.classify import AstromerStage, classify as classify_with_embeddings, pooled_embeddings
    from fink_t2.astromer.encoder import Encoder

    encoder = Encoder.load(encoder_path)
    stage = AstromerStage(encoder, None, output_embedding=True)
    model = load_model()
    batch = decode_payloads(payloads)
    selected = np.array([i for i, r in enumerate(cut_reasons(batch)) if r is None and batch.error[i] is None],
                        dtype=np.int64)
    lcs = build_light_curves(batch, selected)
    n, k = len(payloads), max(len(lcs), 1)
    encoder_rate = best_rate(k, lambda: pooled_embeddings(encoder, lcs, batch.object_id), repeats)
    whole = best_rate(n, lambda: classify_with_embeddings(payloads, stage, model), repeats)
    return {
        "encoder": str(encoder.path), "embedding_dim": encoder.width,
        "embedding_classified_per_s_core": encoder_rate,
        "embedding_ms_per_classified_alert": 1000.0 / encoder_rate,
        "classify_all_with_embeddings_per_s_core": whole,
        "classified_with_embeddings_per_s_core": whole * len(lcs) / n,
    }


def _embedding_stage(payloads: list[bytes], encoder: str | None, repeats: int) -> dict:
    """:func:`measure_embeddings`, or why it was skipped: no ``encoder`` given and none shipped."""
    shipped = MODELS_DIR / f"{ASTROMER_SHIPPED_ENCODER_ID}.tflite"
    if encoder is None and not shipped.is_file():
        return {"embedding_skipped": f"no encoder: {shipped} is not shipped yet and --encoder was not given"}
    return measure_embeddings(payloads, encoder, repeats)


def measure_reference_gp_model(payloads: list[bytes], n_classified: int) -> tuple[float, str]:
    """Per-alert GP + one invoke per alert: classified alerts/s on the first ``n_classified`` passing."""
    model = load_model()
    batch = decode_payloads(payloads)
    reasons = cut_reasons(batch)
    selected = np.array([i for i, r in enumerate(reasons) if r is None and batch.error[i] is None][:n_classified],
                        dtype=np.int64)
    lcs = build_light_curves(batch, selected)
    from fink_t2.tools.reference_path import reference_probabilities  # scipy: the [bench] extra

    flavour = "george" if _george_available() else "scipy"
    if flavour == "george":
        rate = len(lcs) / _timed(lambda: _george_reference(lcs, model))
    else:
        rate = len(lcs) / _timed(lambda: reference_probabilities(lcs, model))
    return rate, flavour


def _george_available() -> bool:
    try:
        import george  # noqa: F401
    except ImportError:
        return False
    return True


def _george_reference(lcs, model) -> np.ndarray:
    """The deployed recipe with george: per-alert fit (L-BFGS-B on ln A, ln ℓ_t²), predict, invoke."""
    import george
    import scipy.optimize

    from fink_t2.tools.reference_gp import log_amplitude_bounds

    wavelengths = band_wavelengths(BANDS, ZTF_WAVELENGTH_A)
    grid = model_grid(contract_of(model.meta), lcs.t, lcs.mask)
    probs = []
    for row in range(len(lcs)):
        m = lcs.mask[row]
        x = np.column_stack([lcs.t[row][m], np.asarray(wavelengths)[lcs.band[row][m]]])
        y, err = lcs.flux[row][m], lcs.flux_err[row][m]
        start, low, high = log_amplitude_bounds(y, err)
        kernel = np.exp(start) * george.kernels.Matern32Kernel([400.0, 6000.0**2], ndim=2)
        kernel.freeze_parameter("k2:metric:log_M_1_1")
        gp = george.GP(kernel)
        gp.compute(x, err)

        def nll(p):
            gp.set_parameter_vector(p)
            value = -gp.log_likelihood(y, quiet=True)
            return value if np.isfinite(value) else 1e25

        def grad(p):
            gp.set_parameter_vector(p)
            return -gp.grad_log_likelihood(y, quiet=True)

        result = scipy.optimize.minimize(nll, gp.get_parameter_vector(), jac=grad, method="L-BFGS-B",
                                         bounds=[(low, high), (0.0, np.log(1000.0**2))], tol=1e-6)
        gp.set_parameter_vector(result.x)
        pred = np.column_stack([np.tile(grid[row], len(wavelengths)), np.repeat(wavelengths, grid.shape[1])])
        mean = gp.predict(y, pred, return_cov=False, return_var=False)
        means = mean.reshape(len(wavelengths), -1).T[None]
        probs.append(model.invoke(build_input(model.meta, means, grid[row:row + 1], lcs.age[row:row + 1]))[0])
    return np.array(probs)


# --------------------------------------------------------------------------- end to end


def measure_end_to_end(payloads: list[bytes], config: Config) -> dict:
    """Kafka → Spark (local[2]) → Kafka on a fresh broker: rates, worker RSS, model loads."""
    from fink_t2.kafka import broker
    from fink_t2.spark import stream
    from fink_t2.kafka.topics import topic_sizes

    run_dir = REPO_ROOT / "run" / "bench-kafka"
    port = _free_port()
    bootstrap = broker.up(run_dir, port=port, controller_port=_free_port(), timeout=90, security=config.kafka)
    kafka = config.with_bootstrap(bootstrap).kafka  # the config's client security, on this broker
    load_log = run_dir / "model_loads.log"
    load_log.unlink(missing_ok=True)
    os.environ[LOAD_LOG_ENV] = str(load_log)
    try:
        topic = "ztf_bench_programid1"
        broker.delete_topics(kafka, [topic, config.output.enriched_topic, config.output.scores_topic,
                                               config.output.deadletter_topic])
        broker.create_topic(kafka, topic, partitions=2)
        _produce(kafka, topic, payloads)
        bench_config = _bench_config(config, bootstrap, run_dir)
        spark = stream.build_spark(bench_config, app_name="fink_t2_bench")
        sampler = RssSampler()
        sampler.start()
        try:
            started = time.monotonic()
            query = stream.start_classify_query(spark, bench_config, once=True)
            query.awaitTermination()
            wall = time.monotonic() - started
            progress = [p for p in query.recentProgress if p.numInputRows > 0]
        finally:
            sampler.stop()
            spark.stop()
        out_sizes = topic_sizes(kafka, [bench_config.output.enriched_topic, bench_config.output.deadletter_topic])
        return _e2e_figures(len(payloads), wall, progress, out_sizes, sampler, load_log)
    finally:
        os.environ.pop(LOAD_LOG_ENV, None)
        broker.down(run_dir)


def _bench_config(config: Config, bootstrap: str, run_dir: Path) -> Config:
    import dataclasses

    config = config.with_bootstrap(bootstrap)
    checkpoint = run_dir / f"checkpoints-{time.time_ns()}"
    return dataclasses.replace(
        config,
        input=dataclasses.replace(config.input, subscribe_pattern="ztf_bench_.*", starting_offsets="earliest"),
        checkpoint=dataclasses.replace(config.checkpoint, dir=str(checkpoint)),
        output=dataclasses.replace(config.output, filters=()),
    )


def _produce(kafka: KafkaConf, topic: str, payloads: list[bytes]) -> None:
    """Send the benchmark input, every message acknowledged (raises otherwise)."""
    from fink_t2.kafka.producer import DirectProducer

    DirectProducer(kafka).send_all([(topic, str(i).encode(), p) for i, p in enumerate(payloads)])


def _e2e_figures(n: int, wall: float, progress, out_sizes: dict, sampler: "RssSampler", load_log: Path) -> dict:
    batches = [(p.numInputRows, p.batchDuration / 1000.0) for p in progress]
    steady = batches[1:] if len(batches) > 1 else batches
    steady_rows, steady_s = sum(r for r, _ in steady), sum(s for _, s in steady)
    processed = sum(r for r, _ in batches)
    processing_s = sum(s for _, s in batches)
    loads = load_log.read_text().splitlines() if load_log.exists() else []
    return {
        "end_to_end_alerts": n,
        "end_to_end_output_messages": sum(out_sizes.values()),
        "end_to_end_wall_s": wall,
        "end_to_end_processing_s": processing_s,
        "end_to_end_alerts_per_s": processed / processing_s if processing_s else 0.0,
        "end_to_end_alerts_per_s_per_core": processed / processing_s / 2 if processing_s else 0.0,
        "end_to_end_steady_alerts_per_s": steady_rows / steady_s if steady_s else 0.0,
        "end_to_end_micro_batches": len(batches),
        "worker_peak_rss_mib": sampler.peak_worker_mib,
        "python_workers": len(sampler.worker_pids),
        "model_loads": len(loads),
    }


class RssSampler(threading.Thread):
    """Samples the RSS of Spark's Python workers: forks of ``pyspark.daemon`` under this process."""

    def __init__(self, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.peak_worker_mib = 0.0
        self.worker_pids: set[int] = set()
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._halt.wait(self.period):
            for proc in me.children(recursive=True):
                try:
                    if _is_python_worker(proc):
                        self.worker_pids.add(proc.pid)
                        self.peak_worker_mib = max(self.peak_worker_mib, proc.memory_info().rss / 2**20)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def _is_python_worker(proc) -> bool:
    """A forked worker: its cmdline and its parent's are both ``... -m pyspark.daemon``."""
    parent = proc.parent()
    return parent is not None and "pyspark.daemon" in " ".join(proc.cmdline()) \
        and "pyspark.daemon" in " ".join(parent.cmdline())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- report


def environment_facts() -> dict:
    """Versions, CPU and git commit of this run."""
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {
        "python": platform.python_version(), "pyspark": version("pyspark"), "numpy": np.__version__,
        "ai_edge_litert": version("ai-edge-litert"), "cpu_model": cpu,
        "cpu_count": os.cpu_count(), "git_commit": git_commit() or "unknown", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def run_bench(alerts: Sequence[str], n: int, quick: bool, stream: bool, conf: str | None,
              embeddings: bool = True, encoder: str | None = None) -> dict:
    """The whole benchmark; returns the JSON-ready figures. With ``embeddings``, the ASTROMER stage
    too (``encoder``, default the shipped one)."""
    messages = load_messages(alerts)
    payloads = replicate(messages, n)
    with one_pinned_core() as core:
        stages = measure_stages(payloads, repeats=1 if quick else 3)
        embedding = _embedding_stage(payloads, encoder, 1 if quick else 3) if embeddings else {}
        reference_gp_model, flavour = measure_reference_gp_model(payloads, QUICK_REFERENCE if quick else FULL_REFERENCE)
    # the reference decodes and cuts every alert too (same stages), then fits and invokes per alert
    seconds = n / stages.decode + n / stages.cuts + stages.n_classified / reference_gp_model
    reference_rate = stages.n_classified / seconds
    figures = {
        "n_alerts": n, "n_unique_alerts": len(messages), "pinned_core": core,
        "decoded_per_s_core": stages.decode,
        "cuts_per_s_core": stages.cuts,
        "gp_classified_per_s_core": stages.gp,
        "model_input_classified_per_s_core": stages.model_input,
        "inference_classified_per_s_core": stages.inference,
        "output_encoding_per_s_core": stages.output_encoding,
        "classify_all_per_s_core": stages.classify_all,
        "classified_per_s_core": stages.classify_classified,
        "classified_fraction": stages.n_classified / stages.n_alerts,
        "reference_flavour": flavour,
        "reference_gp_model_classified_per_s_core": reference_gp_model,
        "reference_classified_per_s_core": reference_rate,
        "speedup_vs_reference": stages.classify_classified / reference_rate,
    } | embedding
    if stream:
        figures |= measure_end_to_end(payloads, load_config(conf))
    return figures | {"environment": environment_facts()}


STAGE_KEYS = ("decoded_per_s_core", "cuts_per_s_core", "gp_classified_per_s_core",
              "model_input_classified_per_s_core", "inference_classified_per_s_core",
              "output_encoding_per_s_core", "classify_all_per_s_core", "classified_per_s_core",
              "embedding_classified_per_s_core", "classified_with_embeddings_per_s_core",
              "reference_classified_per_s_core")


def format_table(figures: dict) -> str:
    """The figures as a terminal table."""
    lines = [f"fink-t2 bench: {figures['n_alerts']} alerts ({figures['n_unique_alerts']} unique), "
             f"{figures['classified_fraction']:.0%} classified, one pinned core", ""]
    lines += [f"  {key:<40} {figures[key]:>12,.0f}" for key in STAGE_KEYS if key in figures]
    lines.append(f"  {'speedup_vs_reference (' + figures['reference_flavour'] + ')':<40} "
                 f"{figures['speedup_vs_reference']:>12.1f}×")
    for key in ("end_to_end_alerts_per_s", "end_to_end_steady_alerts_per_s", "end_to_end_wall_s",
                "worker_peak_rss_mib", "python_workers", "model_loads"):
        if key in figures:
            lines.append(f"  {key:<40} {figures[key]:>12,.1f}")
    if "embedding_skipped" in figures:
        lines.append(f"  embeddings skipped: {figures['embedding_skipped']}")
    env = figures["environment"]
    lines += ["", f"  {env['cpu_model']}, {env['cpu_count']} cores, Python {env['python']}, pyspark "
              f"{env['pyspark']}, numpy {env['numpy']}, commit {env['git_commit']}, {env['date']}"]
    return "\n".join(lines)


README_BEGIN = "<!-- bench:begin (written by `fink-t2 bench --readme`; do not edit by hand) -->"
README_END = "<!-- bench:end -->"
#: (figure key, label, target as (threshold, text) or None); classified = passed the cuts
MARKDOWN_ROWS = (
    ("decoded_per_s_core", "decode, all alerts/s/core", (10_000, "≥ 10,000")),
    ("cuts_per_s_core", "cuts, all alerts/s/core", None),
    ("gp_classified_per_s_core", "GP (fit + predict), classified alerts/s/core", None),
    ("inference_classified_per_s_core", "inference, classified alerts/s/core", None),
    ("classify_all_per_s_core", "whole `classify`, all alerts/s/core", None),
    ("classified_per_s_core", "whole `classify`, **classified** alerts/s/core", (2_000, "≥ 2,000")),
    ("embedding_classified_per_s_core", "ASTROMER encoder (light curves → pooled embeddings), classified alerts/s/core", None),
    ("embedding_ms_per_classified_alert", "ASTROMER encoder, ms per classified alert", None),
    ("classified_with_embeddings_per_s_core", "whole `classify` **with embeddings**, classified alerts/s/core",
     (1_000, "≥ 1,000")),
    ("reference_classified_per_s_core", "reference path (per-alert GP + one invoke), classified/s/core", None),
    ("speedup_vs_reference", "ours / reference, same run", (30, "≥ 30×")),
    ("end_to_end_alerts_per_s", "end to end Kafka → Spark → Kafka, alerts/s (all micro-batches)", (3_000, "≥ 3,000")),
    ("end_to_end_steady_alerts_per_s", "end to end, alerts/s after the first micro-batch", None),
    ("worker_peak_rss_mib", "Python worker peak RSS, MiB", (-600, "< 600")),
)


def _markdown_value(key: str, value: float) -> str:
    if key == "speedup_vs_reference":
        return f"{value:.1f}×"
    return f"{value:.3f}" if key == "embedding_ms_per_classified_alert" else f"{value:,.0f}"


def _target_cell(target: tuple[float, str] | None, value: float) -> str:
    if target is None:
        return ""
    threshold, text = target
    met = value < -threshold if threshold < 0 else value >= threshold
    return f"{text} {'✔' if met else '✘'}"


def format_markdown(figures: dict, command: str) -> str:
    """The figures as the README's Markdown block: provenance line, then one row per figure."""
    env = figures["environment"]
    lines = [README_BEGIN, "",
             f"Run of {env['date']}, commit {env['git_commit']}, {env['cpu_model']} ({env['cpu_count']} cores), "
             f"Python {env['python']}, pyspark {env['pyspark']}, numpy {env['numpy']}, ai-edge-litert "
             f"{env['ai_edge_litert']}; command `{command}`; N = {figures['n_alerts']:,} alerts "
             f"({figures['n_unique_alerts']} unique, {figures['classified_fraction']:.0%} pass the cuts); "
             f"reference GP: {figures['reference_flavour']}" + _encoder_note(figures) + ".", "",
             "| figure | measured | target |", "|---|---|---|"]
    for key, label, target in MARKDOWN_ROWS:
        if key in figures:
            lines.append(f"| {label} | {_markdown_value(key, figures[key])} | {_target_cell(target, figures[key])} |")
    if "model_loads" in figures:
        equal = figures["model_loads"] == figures["python_workers"]
        lines.append(f"| model loads / Python workers | {figures['model_loads']} / {figures['python_workers']} "
                     f"| equal {'✔' if equal else '✘'} |")
    return "\n".join(lines + ["", README_END])


def _encoder_note(figures: dict) -> str:
    if "encoder" not in figures:
        return f"; embeddings not measured ({figures.get('embedding_skipped', '--no-embeddings')})"
    return f"; encoder {Path(figures['encoder']).name} (d = {figures['embedding_dim']})"


def plot_stages(figures: dict, out: Path) -> None:
    """Horizontal bar chart of the per-core rates (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in STAGE_KEYS if k in figures]
    values = [figures[k] for k in keys]
    fig, ax = plt.subplots(figsize=(9, 4.5), constrained_layout=True)
    colours = ["#c44e52" if k.startswith("reference") else "#4c72b0" for k in keys]
    ax.barh([k.replace("_per_s_core", "") for k in keys], values, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("alerts / s / core")
    ax.invert_yaxis()
    for y, v in enumerate(values):
        ax.text(v * 1.05, y, f"{v:,.0f}", va="center", fontsize=8)
    ax.set_title(f"fink_t2 stages, {figures['n_alerts']} alerts; ours / reference = "
                 f"{figures['speedup_vs_reference']:.0f}×", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _command_line(args) -> str:
    """The documented command this run stands for (``make bench`` when it ran the Makefile's)."""
    return os.environ.get("FINK_T2_BENCH_COMMAND") or "fink-t2 bench " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in (("n", args.n), ("conf", args.conf)) if v) + \
        (" --quick" if args.quick else "") + (" --no-stream" if args.no_stream else "") + \
        (" --no-embeddings" if args.no_embeddings else "") + (f" --encoder {args.encoder}" if args.encoder else "")


def add_bench_parser(subparsers):
    """Register ``fink-t2 bench``; returns its parser (``lsst_night`` adds its options to it)."""
    p = subparsers.add_parser("bench", help="throughput benchmark: stages, reference path, end to end")
    p.add_argument("--alerts", nargs="+", default=[str(DEFAULT_ALERTS)], help="alert files or folders")
    p.add_argument("--n", type=int, default=None, help=f"alerts after replication (default {FULL_N}, quick {QUICK_N})")
    p.add_argument("--quick", action="store_true", help="small N, one repeat: under two minutes")
    p.add_argument("--no-stream", action="store_true", help="skip the Kafka → Spark → Kafka measurement")
    p.add_argument("--conf", default=None, help="TOML config for the streaming part (default: packaged local.toml)")
    p.add_argument("--no-embeddings", action="store_true", help="skip the ASTROMER embedding stage")
    p.add_argument("--encoder", default=None, help="ASTROMER encoder .tflite of the embedding stage (default: shipped)")
    p.add_argument("--out", default=None, help="write the figures as JSON")
    p.add_argument("--plot", default=None, help="write a PNG bar chart of the stages")
    p.add_argument("--readme", default=None, help="rewrite the figures table between the bench markers of this file")
    p.add_argument("--require-george", action="store_true",
                   help="fail unless the reference path uses george (the deployed recipe; pip install '.[bench]')")
    p.set_defaults(handler=run_bench_command, extra="bench")
    return p


def run_bench_command(args) -> int:
    if args.require_george and not _george_available():
        raise SystemExit("fink-t2 bench --require-george: george is not installed (pip install '.[bench]')")
    n = args.n or (QUICK_N if args.quick else FULL_N)
    figures = run_bench(args.alerts, n, args.quick, not args.no_stream, args.conf, embeddings=not args.no_embeddings,
                        encoder=args.encoder)
    print(format_table(figures))
    if args.readme:
        write_readme_block(Path(args.readme), format_markdown(figures, _command_line(args)), README_BEGIN, README_END)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2))
    if args.plot:
        plot_stages(figures, Path(args.plot))
    return 0

