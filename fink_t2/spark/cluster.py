"""``fink-t2 cluster up|down|status``: a local Spark standalone cluster on 127.0.0.1.

One master (port 7077) and one worker, started from the pyspark package's ``spark-class``
with PID files and logs under ``run/spark-cluster``. Submit the job to it with::

    .venv/bin/spark-submit --master spark://127.0.0.1:7077 --jars <connector jars> \\
        --conf spark.pyspark.python=.venv/bin/python processor/t2_stream.py --conf fink_t2/conf/local.toml --once

``fink-t2 cluster submit -- --once`` runs exactly that.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from fink_t2.config import REPO_ROOT
from fink_t2.kafka.broker import spark_kafka_jars

RUN_DIR = REPO_ROOT / "run" / "spark-cluster"
MASTER_URL = "spark://127.0.0.1:7077"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_home() -> Path:
    """The pyspark package folder, which holds ``bin/spark-class`` and the jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _env() -> dict[str, str]:
    return os.environ | {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
                         "PYSPARK_PYTHON": sys.executable}


def _start(name: str, args: list[str]) -> int:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = open(RUN_DIR / f"{name}.log", "ab")
    proc = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=log, stderr=log,
                            env=_env(), start_new_session=True)
    (RUN_DIR / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _pid(name: str) -> int | None:
    path = RUN_DIR / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink()
        return None
    return pid


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def up(cores: int = 2, memory: str = "4g", timeout: float = 60.0) -> None:
    """Start master and worker (no-op for those already running) and wait for the master port."""
    if _pid("master") is None:
        _start("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", "7077", "--webui-port", "18080"])
    deadline = time.monotonic() + timeout
    while not _port_open(7077):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Spark master not listening after {timeout} s; see {RUN_DIR / 'master.log'}")
        time.sleep(0.5)
    if _pid("worker") is None:
        _start("worker", [WORKER_CLASS, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                          "--webui-port", "18081", MASTER_URL])


def down(timeout: float = 30.0) -> list[str]:
    """Stop worker then master by their PIDs (SIGTERM, SIGKILL after ``timeout`` s)."""
    stopped = []
    for name in ("worker", "master"):
        pid = _pid(name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid(name) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid(name) is not None:
            os.kill(pid, signal.SIGKILL)
        (RUN_DIR / f"{name}.pid").unlink(missing_ok=True)
        stopped.append(name)
    return stopped


def submit_command(job_args: list[str]) -> list[str]:
    """The spark-submit command line of the streaming job on the local cluster."""
    return [str(Path(sys.executable).parent / "spark-submit"), "--master", MASTER_URL,
            "--jars", ",".join(spark_kafka_jars()), "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", "spark.executor.memory=2g", str(REPO_ROOT / "processor" / "t2_stream.py"), *job_args]


def add_cluster_parser(subparsers) -> None:
    """Register ``fink-t2 cluster up|down|status|submit``."""
    p = subparsers.add_parser("cluster", help="local Spark standalone cluster (master + worker on 127.0.0.1)")
    p.add_argument("action", choices=("up", "down", "status", "submit"))
    p.add_argument("job_args", nargs=argparse.REMAINDER, help="after `submit --`: arguments of processor/t2_stream.py")
    p.set_defaults(handler=run_cluster)


def run_cluster(args) -> int:
    if args.action == "up":
        up()
        print(f"Spark cluster up: {MASTER_URL} (master pid {_pid('master')}, worker pid {_pid('worker')})")
    elif args.action == "down":
        print(f"stopped: {', '.join(down()) or 'nothing was running'}")
    elif args.action == "status":
        running = _port_open(7077) and _pid("master") is not None
        print(f"Spark master {MASTER_URL}: {'up' if running else 'down'}; worker pid {_pid('worker')}")
        return 0 if running else 1
    else:
        job_args = [a for a in args.job_args if a != "--"]
        return subprocess.run(submit_command(job_args), cwd=REPO_ROOT, env=_env()).returncode
    return 0
