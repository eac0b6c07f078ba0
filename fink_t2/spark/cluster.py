"""``fink-t2 cluster up|down|status|submit``: a local Spark standalone cluster on 127.0.0.1.

One master and one worker, started from the pyspark package's ``spark-class`` with PID files,
logs and the master URL under ``run/spark-cluster`` (``--run-dir``). Ports default to Spark's
(master 7077, web UIs 18080 and 18081) and are options of ``up``. Submit the job to it with::

    .venv/bin/spark-submit --master spark://127.0.0.1:7077 --jars <connector jars> \\
        --conf spark.pyspark.python=.venv/bin/python processor/t2_stream.py --conf fink_t2/conf/local.toml --once

``fink-t2 cluster submit -- --once`` runs exactly that, on the master that ``up`` started.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fink_t2.config import REPO_ROOT
from fink_t2.kafka.broker import spark_kafka_jars

HOST = "127.0.0.1"
DEFAULT_RUN_DIR = REPO_ROOT / "run" / "spark-cluster"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
#: Popen handles of the daemons this process started, by PID: polled (reaped) so that a stopped
#: daemon is not taken for a running one while it is a zombie.
_STARTED: dict[int, subprocess.Popen] = {}


class ClusterError(RuntimeError):
    """The local cluster could not be started, or its ports are taken."""


@dataclass(frozen=True)
class Ports:
    """TCP ports of the local cluster on 127.0.0.1."""

    master: int = 7077
    master_ui: int = 18080
    worker_ui: int = 18081

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master}"


def spark_home() -> Path:
    """The pyspark package folder, which holds ``bin/spark-class`` and the jars."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def _env() -> dict[str, str]:
    return os.environ | {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": sys.executable}


def _start(run_dir: Path, name: str, args: list[str]) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], stdout=log, stderr=log,
                                env=_env(), start_new_session=True)
    _STARTED[proc.pid] = proc
    (run_dir / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _alive(pid: int) -> bool:
    if pid in _STARTED:
        return _STARTED[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pid(run_dir: Path, name: str) -> int | None:
    """PID of the running master or worker of ``run_dir``; a stale PID file is removed."""
    path = run_dir / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    if not _alive(pid):
        path.unlink()
        return None
    return pid


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def master_url(run_dir: Path = DEFAULT_RUN_DIR) -> str | None:
    """URL of the master ``up`` started in ``run_dir``, if it runs."""
    url_file = run_dir / "master.url"
    if _pid(run_dir, "master") is None or not url_file.exists():
        return None
    return url_file.read_text().strip()


def _check_ports_free(ports: Ports) -> None:
    taken = [port for port in (ports.master, ports.master_ui, ports.worker_ui) if _port_open(port)]
    if taken:
        raise ClusterError(f"port(s) {', '.join(map(str, taken))} on {HOST} already in use: choose others with "
                           f"--port / --webui-port / --worker-webui-port")


def up(ports: Ports = Ports(), cores: int = 2, memory: str = "4g", timeout: float = 60.0,
       run_dir: Path = DEFAULT_RUN_DIR) -> str:
    """Start master and worker on ``ports`` (no-op if this run dir's cluster runs); returns the master URL."""
    running = master_url(run_dir)
    if running is not None:
        return running
    _check_ports_free(ports)
    pid = _start(run_dir, "master", [MASTER_CLASS, "--host", HOST, "--port", str(ports.master),
                                     "--webui-port", str(ports.master_ui)])
    _wait_for_master(run_dir, pid, ports.master, timeout)
    (run_dir / "master.url").write_text(ports.master_url + "\n")
    if _pid(run_dir, "worker") is None:
        _start(run_dir, "worker", [WORKER_CLASS, "--host", HOST, "--cores", str(cores), "--memory", memory,
                                   "--webui-port", str(ports.worker_ui), ports.master_url])
    return ports.master_url


def _wait_for_master(run_dir: Path, pid: int, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _port_open(port):
        if _pid(run_dir, "master") != pid:
            raise ClusterError(f"Spark master exited during start-up; see {run_dir / 'master.log'}")
        if time.monotonic() > deadline:
            raise ClusterError(f"Spark master not listening after {timeout} s; see {run_dir / 'master.log'}")
        time.sleep(0.5)


def down(timeout: float = 30.0, run_dir: Path = DEFAULT_RUN_DIR) -> list[str]:
    """Stop worker then master by their PIDs (SIGTERM, SIGKILL after ``timeout`` s).

    Each daemon runs in its own session (process group = its PID), so a daemon still in its
    ``spark-class`` launcher stage is stopped with the launcher's children.
    """
    stopped = []
    for name in ("worker", "master"):
        pid = _pid(run_dir, name)
        if pid is None:
            continue
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid(run_dir, name) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid(run_dir, name) is not None:
            _signal_group(pid, signal.SIGKILL)
        _STARTED.pop(pid, None)
        (run_dir / f"{name}.pid").unlink(missing_ok=True)
        stopped.append(name)
    (run_dir / "master.url").unlink(missing_ok=True)
    return stopped


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:  # already gone
        pass


def submit_command(job_args: list[str], master: str) -> list[str]:
    """The spark-submit command line of the streaming job on the cluster at ``master``."""
    return [str(Path(sys.executable).parent / "spark-submit"), "--master", master,
            "--jars", ",".join(spark_kafka_jars()), "--conf", f"spark.pyspark.python={sys.executable}",
            "--conf", "spark.executor.memory=2g", str(REPO_ROOT / "processor" / "t2_stream.py"), *job_args]


def add_cluster_parser(subparsers) -> None:
    """Register ``fink-t2 cluster up|down|status|submit`` (each action has its own ``--help``)."""
    p = subparsers.add_parser("cluster", help="local Spark standalone cluster (master + worker on 127.0.0.1)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="PID files, logs, master URL")
    actions = p.add_subparsers(dest="action", required=True)
    start = actions.add_parser("up", parents=[common], help="start master + worker")
    defaults = Ports()
    start.add_argument("--port", type=int, default=defaults.master, help="master port")
    start.add_argument("--webui-port", type=int, default=defaults.master_ui, help="master web UI port")
    start.add_argument("--worker-webui-port", type=int, default=defaults.worker_ui, help="worker web UI port")
    start.add_argument("--cores", type=int, default=2, help="worker cores")
    start.add_argument("--memory", default="4g", help="worker memory (JVM size, e.g. 4g)")
    actions.add_parser("down", parents=[common], help="stop worker and master")
    actions.add_parser("status", parents=[common], help="exit 0 if the master runs")
    submit = actions.add_parser("submit", parents=[common], help="spark-submit the job to the running master",
                                description="Arguments after `--` go to processor/t2_stream.py, "
                                            "e.g. `fink-t2 cluster submit -- --once`.")
    submit.add_argument("job_args", nargs="*", metavar="-- JOB_ARG", help="arguments of processor/t2_stream.py")
    p.set_defaults(handler=run_cluster, extra="stream")  # the pyspark package holds spark-class


def run_cluster(args: argparse.Namespace) -> int:
    if args.action == "up":
        ports = Ports(args.port, args.webui_port, args.worker_webui_port)
        url = up(ports, cores=args.cores, memory=args.memory, run_dir=args.run_dir)
        print(f"Spark cluster up: {url} (master pid {_pid(args.run_dir, 'master')}, "
              f"worker pid {_pid(args.run_dir, 'worker')})")
        return 0
    if args.action == "down":
        print(f"stopped: {', '.join(down(run_dir=args.run_dir)) or 'nothing was running'}")
        return 0
    url = master_url(args.run_dir)
    if args.action == "status":
        print(f"Spark master: {url or 'down'}; worker pid {_pid(args.run_dir, 'worker')}")
        return 0 if url else 1
    if url is None:
        raise ClusterError(f"no Spark master runs from {args.run_dir}: run `fink-t2 cluster up` first")
    return subprocess.run(submit_command(args.job_args, url), cwd=REPO_ROOT, env=_env()).returncode
