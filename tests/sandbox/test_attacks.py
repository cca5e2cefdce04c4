"""Adversarial suite: hostile little programs run in the sandbox; every attempt must be contained.

Each attack is a real Python script run by ``run_sandboxed``. The test asserts on the host side that
nothing escaped (the key is absent, the host's listener got no connection, the harness file is
unchanged, no process survives) and that the sandbox recorded how the program ended. Limits are kept
small so the shared 2-core test machine is never at risk: the 50 GB allocation and the 10 GB write are
refused by the kernel long before they happen.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fars.safe_files import remove_tree
from fars.sandbox import (
    SandboxError,
    SandboxLimits,
    SandboxResult,
    SandboxUnavailable,
    folder_bytes,
    probe,
    read_sandbox_file,
    run_sandboxed,
)

REPO = Path(__file__).resolve().parents[2]
# stdlib-only attacks run on the system interpreter, reachable in every backend
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
SMALL = SandboxLimits(wall_s=20, cpu_s=20, memory_mb=512, processes=32, file_size_mb=8, disk_mb=64, open_files=64)


def _available(backend: str) -> bool:
    try:
        return probe(backend).backend == backend
    except SandboxUnavailable:
        if backend == "bwrap" and os.environ.get("FARS_REQUIRE_BWRAP"):
            raise  # CI installs bubblewrap: there, its absence is a failure
        return False


BACKENDS = [
    pytest.param(
        b, marks=pytest.mark.skipif(not _available(b), reason=f"{b} does not work here (apt-get install bubblewrap)")
    )
    for b in ("bwrap", "unshare")
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A work folder any user can reach (the unshare backend has no mount namespace)."""
    path = Path(tempfile.mkdtemp(prefix="fars-sbx-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    remove_tree(path)  # what an attack leaves may be thousands of levels deep


@pytest.fixture
def harness_dir() -> Iterator[Path]:
    """Files of the harness, outside the sandbox's folder: a config with its limits, a record."""
    path = Path(tempfile.mkdtemp(prefix="fars-harness-", dir="/tmp"))
    (path / "limits.json").write_text(json.dumps(SMALL.as_dict()))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def attack(
    script: str, workdir: Path, backend: str, limits: SandboxLimits = SMALL, *args: str, **kw: object
) -> SandboxResult:
    """Run one attack script in the sandbox and return (and record) how it ended."""
    (workdir / "attack.py").write_text(textwrap.dedent(script))
    record = workdir.parent / f"{workdir.name}.record.json"
    result = run_sandboxed(
        [PYTHON, "attack.py", *args],
        workdir,
        limits,
        backend=backend,
        record_path=record,
        **kw,  # type: ignore[arg-type]
    )
    assert json.loads(record.read_text())["wall_s"] == result.wall_s  # every attempt is recorded
    record.unlink()
    assert _processes_of_user(result.uid) == [], "a sandboxed process survived"
    return result


def _processes_of_user(uid: int | None) -> list[int]:
    if uid is None:
        return []
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid]


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def report(result: SandboxResult) -> dict[str, str]:
    """The JSON the attack printed last (its own view of what it managed)."""
    lines = [line for line in result.stdout_tail.splitlines() if line.startswith("{")]
    assert lines, f"attack printed nothing: {result.summary()}\n{result.stderr_tail[-2000:]}"
    return dict(json.loads(lines[-1]))


def test_keys_in_the_environment_are_not_there(workdir: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdefghijklmnop")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstu")
    script = """
        import json, os
        leaked = {k: v for k, v in os.environ.items() if any(s in k for s in ("KEY", "TOKEN", "SECRET"))}
        leaked.update({k: v for k, v in os.environ.items() if v.startswith(("sk-", "hf_", "ghp_"))})
        environ_of_parent = "unreadable"
        try:
            environ_of_parent = open(f"/proc/{os.getppid()}/environ", "rb").read().decode(errors="replace")
        except OSError as exc:
            environ_of_parent = f"refused: {exc}"
        print(json.dumps({"leaked": leaked, "parent": environ_of_parent[:200], "home": os.environ["HOME"]}))
    """
    extra = {"GITHUB_TOKEN": "ghp_abcdefghijklmnopqrstuvwx", "SEED": "3", "INNOCENT": "sk-abcdefghijklmnop"}
    result = attack(script, workdir, backend, env=extra)
    seen = report(result)
    assert result.ok, result.stderr_tail
    assert seen["leaked"] == {}
    assert "sk-live" not in seen["parent"] and "WANDB_API_KEY" not in seen["parent"]
    assert seen["home"] == str(workdir)
    assert result.refused_env == ["GITHUB_TOKEN", "INNOCENT"]  # refused by name and by value


def test_netrc_and_config_folders_are_out_of_reach(
    workdir: Path, backend: str, harness_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = harness_dir / "home"
    for name, text in {
        ".netrc": "machine api.example.com login me password hunter2",
        ".config/wandb/settings": "api_key = 0123456789abcdef",
        ".aws/credentials": "aws_secret_access_key = hunter2",
    }.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
        (home / name).chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    script = """
        import json, os, sys
        got = {}
        for path in sys.argv[1:] + [os.path.expanduser("~/.netrc"), "/root/.netrc", "/root/.config",
                                    "/root/.cache", "/etc/shadow", "/root/.ssh/id_rsa", "/root/.npmrc"]:
            try:
                got[path] = open(path).read()[:40] if not os.path.isdir(path) else str(os.listdir(path))
            except OSError as exc:
                got[path] = None
        print(json.dumps({k: v for k, v in got.items() if v is not None}))
    """
    targets = [str(home / ".netrc"), str(home / ".config/wandb/settings"), str(home / ".aws/credentials")]
    result = attack(script, workdir, backend, SMALL, *targets)
    assert report(result) == {}, "a secret file was readable"


def test_sockets_reach_nothing(workdir: Path, backend: str) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    accepted: list[object] = []

    def watch() -> None:
        deadline = time.time() + 8
        while time.time() < deadline and not accepted:
            try:
                accepted.append(listener.accept())
            except OSError:
                continue

    watcher = threading.Thread(target=watch)
    watcher.start()
    script = """
        import json, socket, sys
        port = int(sys.argv[1])
        out = {}
        for name, target in {"host-loopback": ("127.0.0.1", port), "internet": ("1.1.1.1", 443),
                             "pypi": ("pypi.org", 443)}.items():
            try:
                socket.create_connection(target, timeout=2).close()
                out[name] = "connected"
            except OSError as exc:
                out[name] = f"blocked: {exc}"
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x", ("8.8.8.8", 53))
            out["udp"] = "sent"
        except OSError as exc:
            out["udp"] = f"blocked: {exc}"
        print(json.dumps(out))
    """
    result = attack(script, workdir, backend, SMALL, str(port))
    watcher.join()
    listener.close()
    seen = report(result)
    assert accepted == [], "the sandbox reached a socket on the host"
    assert all(v.startswith("blocked") for v in seen.values()), seen


def test_fork_bomb_is_capped_by_the_process_limit(workdir: Path, backend: str) -> None:
    script = """
        import json, os, sys, time
        n = 0
        try:
            while n < 10000:
                if os.fork() == 0:
                    time.sleep(600)
                    os._exit(0)
                n += 1
        except OSError as exc:
            print(json.dumps({"forked": n, "refused": str(exc)}), flush=True)
        while True:  # then try forever, as a bomb would
            try:
                os.fork()
            except OSError:
                time.sleep(0.05)
    """
    limits = SandboxLimits(wall_s=3, cpu_s=20, memory_mb=512, processes=24, file_size_mb=8, disk_mb=64, open_files=64)
    result = attack(script, workdir, backend, limits)
    seen = report(result)
    assert int(seen["forked"]) < 24, seen
    assert result.timed_out and result.limit_hit == "wall"
    assert result.wall_s < 10


def test_fifty_gigabytes_are_refused_by_the_memory_limit(workdir: Path, backend: str) -> None:
    script = """
        import json
        try:
            block = bytearray(50 * 1024**3)
            print(json.dumps({"allocated": len(block)}))
        except MemoryError:
            print(json.dumps({"allocated": 0}), flush=True)
            raise
    """
    result = attack(script, workdir, backend)
    assert report(result) == {"allocated": 0}
    assert result.limit_hit == "memory" and result.exit_code == 1


def test_ten_gigabyte_file_stops_at_the_file_size_limit(workdir: Path, backend: str) -> None:
    script = """
        import json
        written = 0
        chunk = b"x" * (1 << 20)
        try:
            with open("huge.bin", "wb") as f:
                while written < 10 * 1024**3:
                    f.write(chunk)
                    written += len(chunk)
        except OSError as exc:
            print(json.dumps({"written": written, "error": str(exc)}), flush=True)
            raise
    """
    result = attack(script, workdir, backend)
    assert result.limit_hit == "file_size", result.summary()
    assert (workdir / "huge.bin").stat().st_size <= SMALL.file_size_mb * 1024 * 1024


def test_filling_the_disk_with_many_files_is_stopped(workdir: Path, backend: str) -> None:
    script = """
        import os
        chunk = os.urandom(1 << 20)
        for i in range(10 * 1024):  # 10 GB in 1 MB files, each under the file-size limit
            with open(f"part{i:05d}.bin", "wb") as f:
                f.write(chunk)
    """
    result = attack(script, workdir, backend)
    assert result.limit_hit == "disk", result.summary()
    assert folder_bytes(workdir) < 1024**3, "the disk watchdog let well over its limit through"


def test_two_hundred_thousand_empty_files_are_stopped(workdir: Path, backend: str) -> None:
    """Empty files take no blocks: only a limit on entries (inodes) stops them."""
    script = """
        import os
        os.mkdir("many")
        for i in range(200_000):
            open(f"many/{i}", "w").close()
    """
    limits = dataclasses.replace(SMALL, files=2000)
    result = attack(script, workdir, backend, limits)
    assert result.limit_hit == "files", result.summary()
    made = len(os.listdir(workdir / "many"))
    assert made < 200_000, f"all {made} files were made"


def test_a_tree_thousands_of_levels_deep_is_stopped_and_cleaned_up(workdir: Path, backend: str) -> None:
    script = """
        import os, time
        for _ in range(3000):
            os.mkdir("d")
            os.chdir("d")
        time.sleep(30)
    """
    limits = dataclasses.replace(SMALL, folder_depth=64)
    result = attack(script, workdir, backend, limits)
    assert result.limit_hit == "depth", result.summary()
    assert result.wall_s < 10
    remove_tree(workdir)  # iterative: no RecursionError however deep it got
    assert not workdir.exists()


def test_a_deep_tree_made_between_two_looks_still_fails_the_job(workdir: Path, backend: str) -> None:
    script = """
        import os
        for _ in range(500):
            os.mkdir("d")
            os.chdir("d")
    """
    result = attack(script, workdir, backend, dataclasses.replace(SMALL, folder_depth=64))
    assert result.limit_hit == "depth" and not result.ok, result.summary()
    # it finished between two looks (found at the end), or, under load, a look caught it first and killed it
    assert result.exit_code == 0 or result.signal == "SIGKILL", result.summary()


def test_memory_of_all_its_processes_together_is_bounded(workdir: Path, backend: str) -> None:
    """Six processes under the per-process limit each: together they pass it, and the job is killed."""
    script = """
        import os, time
        for _ in range(5):
            if os.fork() == 0:
                break
        block = b"x" * (150 * 1024 * 1024)  # touched pages, well under the 512 MiB each process may map
        time.sleep(30)
    """
    result = attack(script, workdir, backend, SMALL)
    assert result.limit_hit == "memory", result.summary()
    assert result.peak_memory_mb > SMALL.memory_mb and result.wall_s < 15
    assert result.memory_bound in ("cgroup", "accounting")


def test_planted_fifo_device_link_and_huge_file_are_refused_without_blocking(workdir: Path, backend: str) -> None:
    script = """
        import os
        os.mkfifo("metrics.json")
        os.symlink("/dev/zero", "zero.json")
        with open("huge.json", "wb") as f:
            f.write(b"{" + b" " * (7 * 1024 * 1024))
    """
    assert attack(script, workdir, backend).ok
    started = time.monotonic()
    with pytest.raises(SandboxError, match="FIFO"):
        read_sandbox_file(workdir, "metrics.json")
    with pytest.raises(SandboxError, match="link"):
        read_sandbox_file(workdir, "zero.json")
    with pytest.raises(SandboxError, match="over the"):
        read_sandbox_file(workdir, "huge.json", max_bytes=1024 * 1024)
    assert time.monotonic() - started < 2


def test_sleeping_forever_and_daemons_end_at_the_wall_limit(workdir: Path, backend: str) -> None:
    script = """
        import os, time
        if os.fork() == 0:  # a daemon: new session, double fork, ignores SIGTERM/SIGHUP
            os.setsid()
            if os.fork() == 0:
                import signal
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                time.sleep(10**6)
            os._exit(0)
        time.sleep(10**6)
    """
    limits = SandboxLimits(wall_s=1.5, cpu_s=20, memory_mb=512, processes=16, file_size_mb=8, disk_mb=64, open_files=64)
    started = time.monotonic()
    result = attack(script, workdir, backend, limits)
    assert result.timed_out and result.limit_hit == "wall"
    assert time.monotonic() - started < 8
    # attack() checked that no process of the sandbox's user is left


def test_busy_loop_hits_the_cpu_limit(workdir: Path, backend: str) -> None:
    limits = SandboxLimits(wall_s=20, cpu_s=1, memory_mb=512, processes=16, file_size_mb=8, disk_mb=64, open_files=64)
    result = attack("while True:\n    pass\n", workdir, backend, limits)
    assert result.limit_hit == "cpu" and result.signal in ("SIGXCPU", "SIGKILL"), result.summary()
    assert not result.timed_out


def test_writes_outside_its_folder_fail_and_harness_files_stay_unchanged(
    workdir: Path, backend: str, harness_dir: Path
) -> None:
    own_source = REPO / "fars" / "sandbox" / "limits.py"
    guarded = [harness_dir / "limits.json", own_source, Path(sys.executable).resolve()]
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in guarded}
    outside = Path("/var/tmp") / f"fars-escape-{os.getpid()}"
    script = """
        import json, os, sys
        out = {}
        for path in sys.argv[1:]:
            try:
                with open(path, "a") as f:
                    f.write("pwned")
                out[path] = "written"
            except OSError as exc:
                out[path] = f"refused: {exc.strerror}"
        try:
            os.symlink("/etc/passwd", "metrics.json")  # a trap for the harness reading results
        except OSError:
            pass
        open("inside.txt", "w").write("fine")
        print(json.dumps(out))
    """
    targets = [*map(str, guarded), "/usr/lib/evil.so", "/etc/evil.conf", str(REPO / "evil.py")]
    if backend == "bwrap":  # world-writable host folders are hidden only where there is a mount namespace
        targets.append(str(outside))
    result = attack(script, workdir, backend, SMALL, *targets)
    seen = report(result)
    assert all(v.startswith("refused") for v in seen.values()), seen
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in guarded} == before
    assert not outside.exists() and not (REPO / "evil.py").exists()
    assert (workdir / "inside.txt").read_text() == "fine"
    with pytest.raises(SandboxError, match="a link"):
        read_sandbox_file(workdir, "metrics.json")
    assert read_sandbox_file(workdir, "inside.txt") == b"fine"
    with pytest.raises(SandboxError, match="leaves its folder"):
        read_sandbox_file(workdir, "../" + harness_dir.name + "/limits.json")


def test_signals_to_the_parent_and_everyone_hit_nothing(workdir: Path, backend: str) -> None:
    decoy = subprocess.Popen(["sleep", "60"])
    script = """
        import json, os, signal, sys
        out = {}
        for name, pid in {"parent": os.getppid(), "decoy": int(sys.argv[1]), "init": 1}.items():
            try:
                os.kill(pid, signal.SIGKILL)
                out[name] = "sent"
            except OSError as exc:
                out[name] = f"refused: {exc.strerror}"
        print(json.dumps(out), flush=True)
        try:
            os.kill(-1, signal.SIGKILL)  # every process it may signal, itself included
        except OSError:
            pass
    """
    try:
        result = attack(script, workdir, backend, SMALL, str(decoy.pid))
        assert decoy.poll() is None, "the sandbox killed a host process"
        assert os.getpid() and result.wall_s < 10
        seen = report(result)
        assert seen["decoy"].startswith("refused")  # not visible (PID namespace) or not permitted
    finally:
        decoy.send_signal(signal.SIGTERM)
        decoy.wait()


def test_raising_its_own_limits_is_refused(workdir: Path, backend: str, harness_dir: Path) -> None:
    script = """
        import json, resource, subprocess, sys
        out = {}
        for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE"):
            kind = getattr(resource, name)
            try:
                resource.setrlimit(kind, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                out[name] = "raised"
            except (ValueError, OSError) as exc:
                out[name] = f"refused: {exc}"
        try:
            done = subprocess.run(["prlimit", "--pid", str(__import__("os").getppid()), "--cpu=unlimited"],
                                  capture_output=True)
            out["prlimit-parent"] = "refused" if done.returncode else "raised"
        except OSError as exc:
            out["prlimit-parent"] = f"refused: {exc}"
        try:
            open(sys.argv[1], "w").write('{"wall_s": 999999}')
            out["harness-limits-file"] = "written"
        except OSError as exc:
            out["harness-limits-file"] = f"refused: {exc.strerror}"
        print(json.dumps(out), flush=True)
        block = bytearray(2 * 1024**3)  # the memory limit must still hold
    """
    limits_file = harness_dir / "limits.json"
    before = limits_file.read_text()
    result = attack(script, workdir, backend, SMALL, str(limits_file))
    seen = report(result)
    assert all(v.startswith("refused") for v in seen.values()), seen
    assert limits_file.read_text() == before
    assert result.limit_hit == "memory"


def test_the_harness_survives_every_attack_and_goes_on(workdir: Path, backend: str) -> None:
    """After the hostile runs above, an ordinary program still runs normally in a fresh sandbox."""
    result = attack("import json; print(json.dumps({'sum': sum(range(10))}))", workdir, backend)
    assert result.ok and report(result) == {"sum": 45}


def test_gpus_are_limited_to_the_allocation(workdir: Path, backend: str) -> None:
    script = """
        import glob, json, os, resource
        print(json.dumps({"cuda": os.environ["CUDA_VISIBLE_DEVICES"], "devices": sorted(glob.glob("/dev/nvidia*")),
                          "address_space": resource.getrlimit(resource.RLIMIT_AS)[0]}))
    """
    none = report(attack(script, workdir, backend))
    assert none["cuda"] == "" and 0 < none["address_space"] <= SMALL.memory_mb * 1024**2
    one = report(attack(script, workdir, backend, SMALL, gpus=[1]))
    # CUDA reserves address space far beyond RAM: a GPU job gets no address-space limit, or cuInit fails
    assert one["cuda"] == "1" and one["address_space"] == resource.RLIM_INFINITY
    if backend == "bwrap":
        assert all(d in ("/dev/nvidia1", "/dev/nvidiactl") or "uvm" in d or "modeset" in d for d in one["devices"])


def test_network_isolation_can_be_required() -> None:
    if probe("rlimits").network_isolated:
        pytest.skip("rlimits cannot cut the network by design")
    with pytest.raises(SandboxUnavailable, match="cannot cut the network"):
        run_sandboxed(["true"], Path("/tmp"), backend="rlimits", require_network_isolation=True)
