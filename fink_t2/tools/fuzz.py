"""Fuzzing the alert decoder against fastavro: ``make fuzz`` / ``python -m fink_t2.tools.fuzz``.

Cases (``tools.fuzz_cases``: mutated real alerts, hostile schemas) are decoded in a *subject*
process by ``decode_payloads`` (the compiled decoder, one call per batch, as the stream does)
and by the fastavro path; every alert it accepts is enriched (``kafka.messages.enrich_alert``).
An *oracle* process (fastavro only, address space limited to ``ORACLE_MEMORY``) reads each
case and each enriched message with ``fastavro.reader``, the consumers' path. A process that
dies is restarted and its batch replayed case by case, so crashes and hangs are attributed.

Outcome of a case (``OUTCOMES``):

- ``agree_ok`` / ``agree_error``: fastavro and we both decode it (same values) / both refuse it;
- ``refused_by_policy``: we refuse what fastavro may read, by rule (``POLICY_REASONS``: the
  schema rules of ``alerts.schema``, codecs, block size); fastavro is not run on such schemas
  (it crashes or hangs on them) except on a sample (``fastavro_alone`` in the report);
- ``stricter``: we refuse bytes fastavro reads but the Avro spec forbids (``STRICTER_REASONS``);
- ``wrong``: any other disagreement, an enriched message fastavro cannot read (or reads other
  values from), or an exception out of ``decode_payloads``;
- ``crash`` / ``hang``: the subject process died / exceeded its time (``CASE_TIMEOUT_S``).
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fink_t2.alerts.batch import CANDIDATE_SCALARS
from fink_t2.tools.fuzz_cases import CLASSES, Corpus, load_corpus, make_case

ORACLE_MEMORY = 3 << 30  # bytes of address space for fastavro
SUBJECT_MEMORY = 6 << 30  # bytes of address space for our decoder (numba reserves ~0.5 GiB)
BATCH = 48  # cases per subject call (fewer distinct schemas than the decoders' caches hold)
CASE_TIMEOUT_S = 10.0  # one case, replayed alone
BATCH_TIMEOUT_S = 120.0
#: reasons of cases we refuse by rule, whatever fastavro would do.
POLICY_REASONS = ("schema:", "type_mismatch:", "avro_decode: unsupported codec", "avro_decode: deflate block inflates",
                  "avro_decode: data block larger", "avro_decode: record larger",
                  "avro_decode: expected 1 record per message")  # one block of one record, as ZTF sends
#: reasons of bytes the Avro spec forbids but fastavro reads: a long is at most 10 bytes, a
#: union or enum index is >= 0 (fastavro takes -1 as the last branch), a block holds exactly its
#: records (fastavro ignores trailing bytes; the enriched record would read them as t2 fields),
#: a deflate block is a whole deflate stream (fastavro keeps what a cut stream inflates to), a
#: container starts with Obj\x01 (fastavro 1.13 does not look at these 4 bytes), a block count of
#: -2^63 has no item count (fastavro's negation overflows and it reads an empty block).
STRICTER_REASONS = ("avro_decode: varint longer than 10 bytes", "avro_decode: negative union or enum index",
                    "avro_decode: record shorter than its block", "avro_decode: truncated deflate block",
                    "avro_decode: not an Avro container (bad magic)", "avro_decode: block count -2^63")
OUTCOMES = ("agree_ok", "agree_error", "refused_by_policy", "stricter", "wrong", "crash", "hang")
#: the t2 fields written into every enriched message (status and model as a cut alert).
ENRICH_RESULT = {"t2_status": "cut:fuzz", "t2_model": "fuzz", "t2_class": None, "t2_probs": None, "t2_snia": None}
CRASH, HANG = "crash", "hang"

Row = tuple  # ("error", reason) or ("ok", values)


# --------------------------------------------------------------------------- rows


def _exact(value: float) -> str:
    return float(value).hex()  # exact, and NaN equals NaN


def batch_row(batch: Any, i: int) -> Row:
    """Row ``i`` of an ``AlertBatch`` as a comparable tuple (floats exact, NaN == NaN)."""
    if batch.error[i] is not None:
        return ("error", batch.error[i])
    points = slice(int(batch.offsets[i]), int(batch.offsets[i + 1]))
    values = (
        batch.object_id[i], int(batch.candid[i]), int(batch.candidate_fid[i]),
        *(_exact(getattr(batch, name)[i]) for name in CANDIDATE_SCALARS),
        None if batch.roid is None or batch.roid[i] == -1 else int(batch.roid[i]),  # -1: unknown, as no column
        None if batch.cdsxmatch is None else batch.cdsxmatch[i],
        tuple(map(_exact, batch.hist_jd[points])), tuple(batch.hist_fid[points].tolist()),
        tuple(map(_exact, batch.hist_mag[points])), tuple(map(_exact, batch.hist_magerr[points])),
        tuple(batch.hist_negative[points].tolist()),
    )
    return ("ok", values)


def same_outcome(ours: Row, ref: Row) -> bool:
    """Both refused, or both decoded to the same values."""
    return ours[0] == ref[0] == "error" or ours == ref


def is_policy(row: Row) -> bool:
    return row[0] == "error" and row[1].startswith(POLICY_REASONS)


def is_stricter(row: Row) -> bool:
    return row[0] == "error" and row[1].startswith(STRICTER_REASONS)


# --------------------------------------------------------------------------- worker processes


def _limit_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def subject_run(cases: list[bytes]) -> dict:
    """Our side of a batch: the compiled rows (one decode_payloads call), the fastavro-path rows,
    the enriched message of each accepted alert, and this process's peak RSS (KiB)."""
    from fink_t2.alerts.batch import records_to_batch
    from fink_t2.alerts.decode import decode_payloads
    from fink_t2.alerts.fastavro_path import decode_one
    from fink_t2.kafka.messages import EnrichError, enrich_alert

    try:
        batch = decode_payloads(cases)
        rows = [batch_row(batch, i) for i in range(len(cases))]
    except Exception:  # a bug: the stream would lose the whole batch; name the culprit cases
        rows = [_single_row(decode_payloads, case) for case in cases]
    decoded = [decode_one(case) for case in cases]
    slow = records_to_batch([r for r, _ in decoded], [e for _, e in decoded])
    enriched: list[bytes | str | None] = []
    for case, row in zip(cases, rows):
        try:
            enriched.append(enrich_alert(case, ENRICH_RESULT) if row is not None and row[0] == "ok" else None)
        except EnrichError as exc:
            enriched.append(f"EnrichError: {exc}")
    return {"rows": rows, "fastavro_path": [batch_row(slow, i) for i in range(len(cases))], "enriched": enriched,
            "rss_kib": peak_rss_kib()}


def _single_row(decode: Callable, case: bytes) -> Row:
    """The row of one case decoded alone, or ("raised", exception)."""
    try:
        return batch_row(decode([case]), 0)
    except Exception as exc:  # the property being tested: any exception out of decode_payloads
        return ("raised", f"{type(exc).__name__}: {exc}"[:200])


def _project(record: Any) -> Any:
    """The fields of a fastavro record that the batch uses (picklable, small)."""
    from fink_t2.alerts.batch import TOP_FIELDS

    if not isinstance(record, dict):
        return record
    keep = set(TOP_FIELDS) | {"t2_status", "t2_model", "t2_schema_version"}
    return {key: value for key, value in record.items() if key in keep}


def oracle_run(payloads: list[bytes]) -> dict:
    """fastavro.reader on each payload: ("ok", projected records) or ("error", reason)."""
    import fastavro

    results = []
    for payload in payloads:
        try:
            results.append(("ok", [_project(r) for r in fastavro.reader(io.BytesIO(payload))]))
        except (Exception, MemoryError, RecursionError) as exc:  # fastavro on hostile bytes: anything
            results.append(("error", f"{type(exc).__name__}: {str(exc)[:120]}"))
    return {"results": results, "rss_kib": peak_rss_kib()}


def _serve(conn: Any, role: str, memory: int) -> None:
    """A worker's loop: receive a job list, send back the result of ``role`` on it."""
    _limit_memory(memory)
    run = subject_run if role == "subject" else oracle_run
    while True:
        jobs = conn.recv()
        if jobs is None:
            return
        conn.send(run(jobs))


class Worker:
    """A child process running ``subject_run`` or ``oracle_run``; restarted after a crash or a hang."""

    def __init__(self, role: str, memory: int):
        self.role, self.memory = role, memory
        self._context = multiprocessing.get_context("spawn")
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self.conn, child = self._context.Pipe()
        self.process = self._context.Process(target=_serve, args=(child, self.role, self.memory), daemon=True)
        self.process.start()
        child.close()

    def _restart(self) -> None:
        self.process.kill()
        self.process.join()
        self.restarts += 1
        self._start()

    def call(self, jobs: list, timeout: float) -> dict | str:
        """The result, or CRASH / HANG (the process is then restarted)."""
        self.conn.send(jobs)
        return self._collect(timeout)

    def _collect(self, timeout: float) -> dict | str:
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
            outcome = CRASH
        else:
            outcome = HANG if self.process.is_alive() else CRASH
        self._restart()
        return outcome

    def submit(self, jobs: list) -> None:
        """Start a batch; ``collect_each`` waits for it (the caller works meanwhile)."""
        self.conn.send(jobs)

    def call_each(self, jobs: list, timeout: float, batch_timeout: float) -> list:
        """Per-job results of one batch; a batch that fails is replayed job by job."""
        self.submit(jobs)
        return self.collect_each(jobs, timeout, batch_timeout)

    def collect_each(self, jobs: list, timeout: float, batch_timeout: float) -> list:
        """Per-job results of the submitted batch ``jobs``; replayed job by job if it failed."""
        result = self._collect(batch_timeout)
        if isinstance(result, dict):
            return _split(result, len(jobs))
        singles = []
        for job in jobs:
            one = self.call([job], timeout)
            singles.append(_split(one, 1)[0] if isinstance(one, dict) else one)
        return singles

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


def _split(result: dict, n: int) -> list[dict]:
    """A batch result as one dict per job (the RSS repeated)."""
    lists = {key: value for key, value in result.items() if isinstance(value, list)}
    return [{key: value[k] for key, value in lists.items()} | {"rss_kib": result["rss_kib"]} for k in range(n)]


def peak_rss_kib() -> int:
    """Peak resident memory of this process since its exec, KiB: ``VmHWM`` of /proc/self/status.

    Not ``ru_maxrss``: it is kept across exec, so a worker spawned from a large parent (pytest after
    other tests) would report the parent's size, not its own."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:  # no procfs (not Linux): ru_maxrss is the best figure left
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# --------------------------------------------------------------------------- judging


def expected_row(oracle: tuple | str) -> Row:
    """What we should output for a case, from fastavro's reading of it."""
    from fink_t2.alerts.batch import records_to_batch

    if not isinstance(oracle, tuple):
        return ("error", f"fastavro {oracle}")
    status, value = oracle
    if status == "error":
        return ("error", f"fastavro: {value}")
    if len(value) != 1:
        return ("error", f"fastavro: {len(value)} records")
    return batch_row(records_to_batch([value[0]]), 0)


def judge(ours: Row | str | None, expected: Row | None) -> str:
    """The outcome of one case (``OUTCOMES``); ``expected`` is None when fastavro was not run."""
    if ours in (CRASH, HANG):
        return ours
    if ours is None or ours[0] == "raised":
        return "wrong"
    if is_policy(ours):
        return "refused_by_policy"
    if same_outcome(ours, expected):
        return "agree_ok" if ours[0] == "ok" else "agree_error"
    return "stricter" if is_stricter(ours) else "wrong"


def enriched_problem(enriched: bytes | str | None, ours: Row, oracle: tuple | str) -> str | None:
    """Why an accepted alert's enriched message fails the consumers' reading, or None."""
    if isinstance(enriched, str) or enriched is None:
        return f"not enriched ({enriched})"
    if not isinstance(oracle, tuple) or oracle[0] != "ok" or len(oracle[1]) != 1:
        return f"fastavro.reader fails on the enriched message: {oracle if isinstance(oracle, str) else oracle[1]}"
    record = oracle[1][0]
    if record.get("t2_status") != ENRICH_RESULT["t2_status"] or record.get("t2_model") != ENRICH_RESULT["t2_model"]:
        return "enriched message lacks its t2 fields"
    return None if expected_row(oracle) == ours else "enriched message reads other values"


# --------------------------------------------------------------------------- run


@dataclass
class Tally:
    """Counts of the run, per class and overall."""

    per_class: dict[str, Counter]
    reasons: dict[str, Counter]
    fastavro_path: Counter
    fastavro_alone: Counter
    examples: list[dict]
    subject_rss_kib: int = 0
    oracle_rss_kib: int = 0

    @classmethod
    def new(cls) -> Tally:
        return cls({name: Counter() for name in CLASSES}, {o: Counter() for o in OUTCOMES}, Counter(), Counter(), [])


def _case_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def generate(seed: int, first: int, count: int, corpus: Corpus) -> list[tuple[int, str, bytes]]:
    """Cases ``first .. first+count-1``: (index, class, payload), classes in turn."""
    names = list(CLASSES)
    return [(i, names[i % len(names)], make_case(names[i % len(names)], _case_rng(seed, i), corpus))
            for i in range(first, first + count)]


def _record(tally: Tally, cls: str, outcome: str, detail: str, payload: bytes, index: int,
            save_dir: Path | None) -> None:
    tally.per_class[cls][outcome] += 1
    tally.reasons[outcome][detail[:70]] += 1
    if outcome in ("wrong", CRASH, HANG) and len(tally.examples) < 50:
        example = {"index": index, "class": cls, "outcome": outcome, "detail": detail[:300]}
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            path = save_dir / f"{index:08d}-{cls}-{outcome}.bin"
            path.write_bytes(payload)
            example["file"] = str(path)
        tally.examples.append(example)


def _judge_batch(tally: Tally, cases: list, ours: list, oracle_cases: dict, oracle_enriched: dict,
                 save_dir: Path | None) -> None:
    for k, (index, cls, payload) in enumerate(cases):
        result = ours[k]
        row = result if isinstance(result, str) else result["rows"]
        expected = expected_row(oracle_cases[k]) if k in oracle_cases else None
        outcome = judge(row, expected)
        detail = row if isinstance(row, str) else (row[1] if row is not None and row[0] != "ok" else "ok")
        if outcome == "wrong" and expected is not None:
            detail = f"ours {str(row)[:120]} / fastavro {str(expected)[:120]}"
        if outcome in ("agree_ok", "stricter", "refused_by_policy", "agree_error") and k in oracle_enriched:
            problem = enriched_problem(result["enriched"], row, oracle_enriched[k])
            tally.per_class[cls]["enriched_checked"] += 1
            if problem is not None:
                outcome, detail = "wrong", problem
        _record(tally, cls, outcome, str(detail), payload, index, save_dir)
        if isinstance(result, dict):
            path = result["fastavro_path"]
            agree = same_outcome(row, path) or (is_stricter(row) and path[0] == "ok")
            tally.fastavro_path["agree" if agree else "differ"] += 1
            if not agree and len(tally.examples) < 50:
                tally.examples.append({"index": index, "class": cls, "outcome": "fastavro_path_differs",
                                       "detail": f"compiled {str(row)[:120]} / fastavro path {str(path)[:120]}"})


def _oracle_jobs(cases: list, ours: list, rng: np.random.Generator, hostile_rate: float) -> tuple[list, list, list]:
    """(case jobs, enriched jobs, hostile jobs): indexes into the batch and payloads for fastavro."""
    case_jobs, enriched_jobs, hostile = [], [], []
    for k, (_, _, payload) in enumerate(cases):
        result = ours[k]
        row = result if isinstance(result, str) else result["rows"]
        if row is not None and not isinstance(row, str) and row[0] == "error" and row[1].startswith("schema:"):
            if rng.random() < hostile_rate:
                hostile.append(payload)  # fastavro alone on what we refuse: crashes and hangs expected
            continue
        case_jobs.append((k, payload))
        if isinstance(result, dict) and isinstance(result["enriched"], bytes):
            enriched_jobs.append((k, result["enriched"]))
    return case_jobs, enriched_jobs, hostile


def _alone_outcome(result: dict | str) -> str:
    """crash, hang, memory (MemoryError), error (a clean exception) or ok, of fastavro alone."""
    if isinstance(result, str):
        return result
    status, value = result["results"][0]
    return "memory" if status == "error" and value.startswith("MemoryError") else status


def run(cases: int, seed: int = 0, corpus: Corpus | None = None, save_dir: Path | None = None,
        hostile_rate: float = 0.01, progress: Callable[[int, Tally], None] | None = None) -> dict:
    """Fuzz ``cases`` cases (classes in turn) and return the report (``summary``)."""
    corpus = corpus or load_corpus()
    tally = Tally.new()
    rng = np.random.default_rng(seed)
    subject, oracle = Worker("subject", SUBJECT_MEMORY), Worker("oracle", ORACLE_MEMORY)
    started = time.perf_counter()
    try:
        batch = generate(seed, 0, min(BATCH, cases), corpus)
        ours = subject.call_each([payload for _, _, payload in batch], CASE_TIMEOUT_S, BATCH_TIMEOUT_S)
        while batch:  # fastavro reads batch k while our decoder runs batch k + 1
            case_jobs, enriched_jobs, hostile = _oracle_jobs(batch, ours, rng, hostile_rate)
            jobs = [p for _, p in case_jobs + enriched_jobs]
            oracle.submit(jobs)
            done = batch[-1][0] + 1
            following = generate(seed, done, min(BATCH, cases - done), corpus)
            following_ours = subject.call_each([p for _, _, p in following], CASE_TIMEOUT_S, BATCH_TIMEOUT_S) \
                if following else []
            answers = oracle.collect_each(jobs, CASE_TIMEOUT_S, BATCH_TIMEOUT_S)
            tally.oracle_rss_kib = max([tally.oracle_rss_kib] + [a["rss_kib"] for a in answers if isinstance(a, dict)])
            answers = [a if isinstance(a, str) else a["results"] for a in answers]
            oracle_cases = {k: answers[j] for j, (k, _) in enumerate(case_jobs)}
            oracle_enriched = {k: answers[len(case_jobs) + j] for j, (k, _) in enumerate(enriched_jobs)}
            _judge_batch(tally, batch, ours, oracle_cases, oracle_enriched, save_dir)
            for payload in hostile:
                tally.fastavro_alone[_alone_outcome(oracle.call([payload], CASE_TIMEOUT_S))] += 1
            tally.subject_rss_kib = max([tally.subject_rss_kib] + [r["rss_kib"] for r in ours if isinstance(r, dict)])
            if progress is not None:
                progress(done, tally)
            batch, ours = following, following_ours
    finally:
        subject.close()
        oracle.close()
    return summary(tally, cases, time.perf_counter() - started, seed)


def summary(tally: Tally, cases: int, seconds: float, seed: int) -> dict:
    """The report: cases per class and outcome, crashes, hangs, wrong results, peak RSS."""
    totals = Counter()
    for counts in tally.per_class.values():
        totals.update(counts)
    return {
        "cases": cases, "seed": seed, "seconds": round(seconds, 1), "cases_per_s": round(cases / max(seconds, 1e-9), 1),
        "crashes": totals[CRASH], "hangs": totals[HANG], "wrong_results": totals["wrong"],
        "subject_peak_rss_mib": round(tally.subject_rss_kib / 1024, 1),
        "oracle_peak_rss_mib": round(tally.oracle_rss_kib / 1024, 1),
        "totals": {key: totals[key] for key in (*OUTCOMES, "enriched_checked")},
        "classes": {name: dict(counts) for name, counts in tally.per_class.items()},
        "reasons": {outcome: dict(counter.most_common(25)) for outcome, counter in tally.reasons.items() if counter},
        "fastavro_path_vs_compiled": dict(tally.fastavro_path),
        "fastavro_alone_on_refused_schemas": dict(tally.fastavro_alone),
        "examples": tally.examples,
    }


def _print_progress(done: int, tally: Tally) -> None:
    totals = Counter()
    for counts in tally.per_class.values():
        totals.update(counts)
    print(f"{done:>9,} cases  wrong {totals['wrong']}  crash {totals[CRASH]}  hang {totals[HANG]}  "
          f"rss {tally.subject_rss_kib / 1024:.0f} MiB", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fink_t2.tools.fuzz --cases N --out FILE.json``: exit status 1 on any problem."""
    parser = argparse.ArgumentParser(prog="python -m fink_t2.tools.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/fuzz.json"))
    parser.add_argument("--save-dir", type=Path, default=Path("out/fuzz"), help="payloads of failing cases")
    parser.add_argument("--hostile-rate", type=float, default=0.01,
                        help="share of refused hostile schemas also given to fastavro alone")
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    every = max(BATCH, args.cases // 200 // BATCH * BATCH)
    started = time.perf_counter()

    def progress(done: int, tally: Tally) -> None:  # the report so far, in case the run is stopped
        if done % every < BATCH:
            _print_progress(done, tally)
            args.out.write_text(json.dumps(summary(tally, done, time.perf_counter() - started, args.seed), indent=1))

    report = run(args.cases, args.seed, save_dir=args.save_dir, hostile_rate=args.hostile_rate, progress=progress)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({key: report[key] for key in ("cases", "seconds", "crashes", "hangs", "wrong_results",
                                                   "subject_peak_rss_mib", "totals")}, indent=1))
    return 1 if report["crashes"] or report["hangs"] or report["wrong_results"] else 0


if __name__ == "__main__":
    sys.exit(main())
