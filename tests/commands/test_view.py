"""`fars view`'s command line: what it serves by default, and clear errors (exit 2) for bad input."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from fars.cli import main
from tests.view.conftest import start_view, stop
from tests.view.synthetic import synthetic_run


def test_bad_folders_and_ports_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["view"]) == 2
    assert "no DIR given and no outputs/ or multirun/ in this folder" in capsys.readouterr().err
    assert main(["view", "missing"]) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    assert main(["view", ".", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["view", ".", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "pass another --port" in err


def test_usage_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "view [DIR ...]" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["view", "--help"])
    assert done.value.code == 0
    assert "ssh -N -L 8765:127.0.0.1:8765" in " ".join(capsys.readouterr().out.split())


def test_default_folders_and_ctrl_c(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "outputs" / "2026-01-01" / "10-00-00", 1)
    synthetic_run(tmp_path / "multirun" / "2026-01-01" / "11-00-00" / "0", 1)
    proc, url = start_view(cwd=tmp_path)
    try:
        runs = httpx.get(f"{url}/api/runs").json()
        assert sorted(r["label"] for r in runs) == ["multirun/2026-01-01/11-00-00/0", "outputs/2026-01-01/10-00-00"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        assert proc.stdout is not None and "stopped (SIGINT)" in proc.stdout.read()
    finally:
        stop(proc)
