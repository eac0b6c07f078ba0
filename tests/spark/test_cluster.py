"""``fink-t2 cluster``: each action has its own --help (which runs nothing); ports are options."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from fink_t2.cli import main
from fink_t2.spark import cluster
from tests.conftest_kafka import free_loopback_port


def _refuse(*args, **kwargs):
    raise AssertionError("--help must not run the action")


@pytest.mark.parametrize("action", ["up", "down", "status", "submit"])
def test_help_of_each_action_prints_help_and_runs_nothing(action, monkeypatch, capsys):
    for name in ("up", "down", "master_url", "submit_command"):
        monkeypatch.setattr(cluster, name, _refuse)
    with pytest.raises(SystemExit) as done:
        main(["cluster", action, "--help"])
    assert done.value.code == 0
    assert f"usage: fink-t2 cluster {action}" in capsys.readouterr().out


def test_submit_passes_the_arguments_after_double_dash(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(cluster, "master_url", lambda run_dir: "spark://127.0.0.1:17077")
    monkeypatch.setattr(cluster, "submit_command", lambda job_args, master: seen.update(args=job_args, master=master)
                        or ["true"])
    assert main(["cluster", "submit", "--run-dir", str(tmp_path), "--", "--once", "--conf", "x.toml"]) == 0
    assert seen == {"args": ["--once", "--conf", "x.toml"], "master": "spark://127.0.0.1:17077"}


def test_submit_without_a_running_master_is_a_clear_error(tmp_path, capsys):
    assert main(["cluster", "submit", "--run-dir", str(tmp_path), "--", "--once"]) == 2
    assert "no Spark master runs" in capsys.readouterr().err


def test_up_refuses_ports_already_in_use(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["cluster", "up", "--run-dir", str(tmp_path), "--port", str(port)]) == 2
    assert f"port(s) {port} on 127.0.0.1 already in use" in capsys.readouterr().err
    assert not (tmp_path / "master.pid").exists()


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _wait_listening(port: int, timeout_s: float = 60.0) -> None:
    """Until a daemon listens on ``port``: by then spark-class has exec'd into the JVM (a read of
    /proc/<pid>/cmdline during that exec came back without the arguments in one CI run)."""
    deadline = time.monotonic() + timeout_s
    while not cluster._port_open(port):
        assert time.monotonic() < deadline, f"nothing listens on port {port} after {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.integration
def test_cluster_on_chosen_ports_up_status_down(tmp_path, capsys):
    ports = [free_loopback_port() for _ in range(3)]
    run = ["--run-dir", str(tmp_path)]
    assert main(["cluster", "up", *run, "--port", str(ports[0]), "--webui-port", str(ports[1]),
                 "--worker-webui-port", str(ports[2]), "--cores", "1", "--memory", "1g"]) == 0
    try:
        url = f"spark://127.0.0.1:{ports[0]}"
        assert url in capsys.readouterr().out
        assert main(["cluster", "status", *run]) == 0 and url in capsys.readouterr().out
        _wait_listening(ports[2])  # the worker's web UI: the master's port was waited for by `up`
        master = _cmdline(int((tmp_path / "master.pid").read_text()))
        worker = _cmdline(int((tmp_path / "worker.pid").read_text()))
        assert master[master.index("--port") + 1] == str(ports[0])
        assert master[master.index("--webui-port") + 1] == str(ports[1])
        assert "--webui-port" in worker, worker
        assert worker[worker.index("--webui-port") + 1] == str(ports[2]) and url in worker
        assert cluster.up(cluster.Ports(*ports), run_dir=tmp_path) == url  # already up: a no-op
    finally:
        assert main(["cluster", "down", *run]) == 0
    assert "worker, master" in capsys.readouterr().out
    assert main(["cluster", "status", *run]) == 1
