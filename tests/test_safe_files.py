"""Hardened file access: what model code may leave in a folder, and the harness (root) touching it.

Each test plants what an attacker would (links at every level, FIFOs, device links, hard links, huge
files, a 3,000-level tree) and checks that reading, writing and clean-up neither follow, nor block,
nor exhaust, nor crash.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from fars.safe_files import (
    UnsafeFileError,
    UnsafeYamlError,
    check_plain,
    chown_tree,
    fresh_dir,
    load_yaml,
    open_append,
    open_regular,
    read_fd,
    read_file,
    read_named,
    remove_tree,
    sha256_file,
    tree_usage,
    write_atomic,
)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file outside the folder model code may touch (the stand-in for /etc/shadow or the ledger)."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_text("root:$6$hash:19000::::::")
    return path


@pytest.fixture
def box(tmp_path: Path) -> Path:
    path = tmp_path / "box"
    path.mkdir()
    return path


def test_a_regular_file_is_read(box: Path) -> None:
    (box / "sub").mkdir()
    (box / "sub" / "metrics.json").write_text('{"ok": 1}')
    assert read_file(box, "sub/metrics.json") == b'{"ok": 1}'


@pytest.mark.parametrize("where", ["metrics.json", "sub/metrics.json", "sub/deeper/metrics.json"])
def test_links_are_refused_at_every_level(box: Path, secret: Path, where: str) -> None:
    # a link as the file itself, or as any folder on the way to it
    (box / "sub").mkdir()
    if where == "metrics.json":
        (box / "metrics.json").symlink_to(secret)
    elif where == "sub/metrics.json":
        (box / "sub" / "metrics.json").symlink_to(secret)
    else:
        (box / "sub" / "deeper").symlink_to(secret.parent)
        where = "sub/deeper/secret.txt"
    with pytest.raises(UnsafeFileError, match="link"):
        read_file(box, where)


def test_the_folder_itself_being_a_link_is_refused(tmp_path: Path, secret: Path) -> None:
    (tmp_path / "box").symlink_to(secret.parent)
    with pytest.raises(UnsafeFileError, match="not a folder"):
        read_file(tmp_path / "box", "secret.txt")


@pytest.mark.parametrize("name", ["../outside/secret.txt", "/etc/passwd", "a/../../x"])
def test_names_leaving_the_folder_are_refused(box: Path, name: str) -> None:
    with pytest.raises(UnsafeFileError, match="leaves its folder"):
        read_file(box, name)


def test_a_fifo_neither_blocks_nor_is_read(box: Path) -> None:
    os.mkfifo(box / "metrics.json")
    started = time.monotonic()
    with pytest.raises(UnsafeFileError, match="FIFO"):
        read_file(box, "metrics.json")
    assert time.monotonic() - started < 1


def test_a_socket_a_folder_and_a_device_are_refused(box: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(box / "sock.json"))
    (box / "dir.json").mkdir()
    (box / "zero.json").symlink_to("/dev/zero")
    try:
        with pytest.raises(UnsafeFileError, match="socket"):
            read_file(box, "sock.json")
    finally:
        server.close()
    with pytest.raises(UnsafeFileError, match="folder"):
        read_file(box, "dir.json")
    with pytest.raises(UnsafeFileError, match="link"):
        read_file(box, "zero.json")
    with pytest.raises(UnsafeFileError, match="character device"):
        read_file(Path("/dev"), "zero")  # even reached without a link, a device is never read


def test_a_hard_link_to_a_file_outside_is_refused(box: Path, secret: Path) -> None:
    os.link(secret, box / "metrics.json")
    with pytest.raises(UnsafeFileError, match="hard links"):
        read_file(box, "metrics.json")


def test_size_is_bounded(box: Path) -> None:
    (box / "big.json").write_bytes(b"x" * 5000)
    with pytest.raises(UnsafeFileError, match="5,000 bytes, over the 4,096"):
        read_file(box, "big.json", max_bytes=4096)
    assert len(read_file(box, "big.json", max_bytes=5000)) == 5000


def test_atomic_write_replaces_a_planted_link_and_never_writes_through_it(box: Path, secret: Path) -> None:
    before = secret.read_bytes()
    (box / "command.json").symlink_to(secret)
    (box / "runs").mkdir()
    (box / "runs" / "train.log").symlink_to(secret)
    write_atomic(box, "command.json", '{"argv": []}')
    assert secret.read_bytes() == before
    assert not (box / "command.json").is_symlink() and (box / "command.json").read_text() == '{"argv": []}'
    with pytest.raises(UnsafeFileError, match="link or special file"):
        open_append(box, "runs/train.log")
    assert secret.read_bytes() == before
    (box / "via").symlink_to(secret.parent)
    with pytest.raises(UnsafeFileError, match="not a folder"):
        write_atomic(box, "via/secret.txt", "overwritten")
    assert secret.read_bytes() == before
    assert sorted(p.name for p in box.iterdir()) == ["command.json", "runs", "via"]  # no temporary file left


def test_appending_to_a_log_works_and_refuses_a_fifo(box: Path) -> None:
    with open_append(box, "logs/train.log") as log:
        log.write(b"step 1\n")
    with open_append(box, "logs/train.log") as log:
        log.write(b"step 2\n")
    assert (box / "logs" / "train.log").read_bytes() == b"step 1\nstep 2\n"
    os.mkfifo(box / "fifo.log")
    with pytest.raises(UnsafeFileError):
        open_append(box, "fifo.log")


def test_check_plain(box: Path, secret: Path) -> None:
    check_plain(box / "missing.sqlite")
    (box / "ledger.sqlite").symlink_to(secret)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        check_plain(box / "ledger.sqlite")


def _deep_tree(root: Path, levels: int) -> None:
    """A tree ``levels`` folders deep, built with relative opens (its full path is far beyond PATH_MAX)."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    with open(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as leaf:
        leaf.write("bottom")
    os.close(fd)


def test_a_3000_level_tree_is_removed_without_recursion(box: Path) -> None:
    import shutil

    _deep_tree(box / "deep", 3000)
    with pytest.raises(RecursionError):
        shutil.rmtree(box / "deep")  # what the standard library does with it
    remove_tree(box / "deep")
    assert not (box / "deep").exists()


def test_removal_never_follows_links_out_of_the_tree(box: Path, secret: Path) -> None:
    tree = box / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "out").symlink_to(secret.parent, target_is_directory=True)
    (tree / "a" / "file").symlink_to(secret)
    os.mkfifo(tree / "a" / "fifo")
    remove_tree(tree)
    assert not tree.exists() and secret.exists() and secret.parent.is_dir()
    (box / "link").symlink_to(secret.parent)
    remove_tree(box / "link")  # a link in place of the folder: the link goes, not what it points at
    assert not (box / "link").exists() and secret.exists()
    remove_tree(box / "never-was")


def test_fresh_dir_recreates_a_folder_clean(box: Path, secret: Path) -> None:
    run = box / "method-seed0"
    run.mkdir()
    (run / "metrics.json").symlink_to(secret)
    (run / "sub").mkdir()
    fresh_dir(run)
    assert run.is_dir() and list(run.iterdir()) == []
    (box / "other").symlink_to(secret.parent)
    fresh_dir(box / "other")
    assert (box / "other").is_dir() and not (box / "other").is_symlink() and secret.exists()


def test_tree_usage_counts_inodes_and_depth_and_stops_early(box: Path, secret: Path) -> None:
    for i in range(300):
        (box / f"empty{i}").touch()
    (box / "link").symlink_to("/")  # counted, never followed
    usage = tree_usage(box)
    assert usage.entries == 301 and usage.bytes < 64 * 1024 and usage.complete and usage.depth == 1
    stopped = tree_usage(box, stop_entries=100)
    assert not stopped.complete and stopped.entries == 101
    _deep_tree(box / "deep", 3000)
    deep = tree_usage(box / "deep", max_depth=64)
    assert deep.depth == 65 and not deep.complete
    remove_tree(box / "deep")


def test_tree_usage_is_not_fooled_by_swapping_a_folder_for_a_link(box: Path) -> None:
    """A folder replaced by a link to / while the watchdog walks: it must not walk the host."""
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            with_link = box / "swap"
            try:
                with_link.mkdir()
                with_link.rmdir()
                with_link.symlink_to("/usr")
                with_link.unlink()
            except OSError:
                pass

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(200):
            assert tree_usage(box).entries <= 1
    finally:
        stop.set()
        swapper.join()


def test_chown_tree_does_not_follow_links(box: Path, secret: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    (box / "a").mkdir()
    (box / "a" / "link").symlink_to(secret)
    owner = secret.stat().st_uid
    chown_tree(box, 54321, 54321)
    assert (box / "a").stat().st_uid == 54321 and os.lstat(box / "a" / "link").st_uid == 54321
    assert secret.stat().st_uid == owner


def test_sha256_is_bounded_and_refuses_links(box: Path, secret: Path) -> None:
    (box / "paper.md").write_text("hello")
    assert sha256_file(box, "paper.md") == hashlib.sha256(b"hello").hexdigest()
    (box / "fig.png").symlink_to(secret)
    with pytest.raises(UnsafeFileError):
        sha256_file(box, "fig.png")


def test_a_tree_its_owner_locked_is_still_removed_without_root(tmp_path: Path) -> None:
    """A program (not root) takes the rights off its folders to stop clean-up: the owner gets them back."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs root (to run the check as another user), setpriv and /usr/bin/python3")
    box = Path(tempfile.mkdtemp(prefix="fars-locked-", dir="/tmp"))
    try:
        shutil.copy(Path(__file__).resolve().parents[1] / "fars" / "safe_files.py", box / "safe_files_copy.py")
        os.chown(box, 65534, 65534)
        os.chmod(box / "safe_files_copy.py", 0o644)
        script = (
            "import os, shutil; from pathlib import Path; from safe_files_copy import remove_tree\n"
            f"t = Path({str(box / 'tree')!r}); (t / 'a' / 'b').mkdir(parents=True); (t / 'a' / 'b' / 'f').write_text('x')\n"
            "os.chmod(t / 'a' / 'b', 0); os.chmod(t / 'a', 0o500)\n"
            "try:\n    shutil.rmtree(t); print('shutil removed it')\nexcept PermissionError:\n    print('shutil refused')\n"
            "remove_tree(t); print('gone' if not t.exists() else 'left')\n"
        )
        done = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script],
            cwd=box, env={"PYTHONPATH": str(box), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.stdout.split() == ["shutil", "refused", "gone"], done.stderr
    finally:
        shutil.rmtree(box, ignore_errors=True)


# -- YAML from outside, files a user names, and the module's own imports ---------------------------------------


def _bomb(levels: int = 9, fan: int = 9) -> str:
    """A "billion laughs" of ``fan`` ** ``levels`` values in about a kilobyte."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * fan) + "]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def test_load_yaml_reads_what_hydra_and_templates_write_and_shares_aliases() -> None:
    assert load_yaml("a: &x [1, 2]\nb: *x\nc: {d: [3]}\n") == {"a": [1, 2], "b": [1, 2], "c": {"d": [3]}}
    assert load_yaml("") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_bomb(), "expands to over 100,000 values"),  # 387 million values once expanded, in 1 KB
        ("a: &a [*a]\n", "nests deeper than 64 levels"),  # an alias of itself: infinite once expanded
        ("[" * 20_000 + "]" * 20_000, "nests deeper than 64 levels of brackets"),  # PyYAML's scanner: quadratic
        ("x:\n" + "".join(" " * (2 * i) + f"k{i}:\n" for i in range(1, 80)) + " " * 160 + "v: 1\n", "deeper than 64"),
        ("a: " + "b" * 2_000_000, "over the 1,048,576 allowed"),
    ],
)
def test_load_yaml_refuses_bombs_depth_and_size_fast_and_small(text: str, reason: str) -> None:
    import tracemalloc

    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(UnsafeYamlError, match=reason) as refused:
        load_yaml(text, source="planted.yaml")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "planted.yaml" in str(refused.value)
    assert time.monotonic() - started < 5 and peak < 64 * 2**20


def test_read_named_follows_the_users_link_but_refuses_what_is_no_plain_file(tmp_path: Path, secret: Path) -> None:
    link = tmp_path / "paper.md"
    link.symlink_to(secret)  # the user named this link on the command line: theirs to follow
    assert read_named(link) == secret.read_bytes()
    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFileError, match="FIFO"):
        read_named(fifo)  # never blocks on it
    big = tmp_path / "big.md"
    with big.open("wb") as out:
        out.truncate(10 * 2**20)
    with pytest.raises(UnsafeFileError, match="over the 1,048,576 allowed"):
        read_named(big, max_bytes=2**20)


def test_open_regular_looks_before_it_opens_and_read_fd_is_bounded(tmp_path: Path, secret: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "record.json").write_text("{}")
    (tmp_path / "run" / "linked.json").symlink_to(secret)
    fd, info = open_regular(tmp_path / "run", "record.json")
    try:
        assert info.st_size == 2 and read_fd(fd, 10) == b"{}"
    finally:
        os.close(fd)
    with pytest.raises(UnsafeFileError, match="is a symbolic link; refused"):
        open_regular(tmp_path / "run", "linked.json")
    (tmp_path / "run" / "big").write_bytes(b"x" * 100)
    fd, _ = open_regular(tmp_path / "run", "big")
    try:
        with pytest.raises(UnsafeFileError, match="grew past the 10 bytes"):
            read_fd(fd, 10)
    finally:
        os.close(fd)
    with pytest.raises(UnsafeFileError, match="leaves its folder"):
        open_regular(tmp_path / "run", "a\0b")


def test_the_module_imports_only_the_standard_library_and_yaml() -> None:
    """review/ and experiments/ (and the sandbox's template jobs) import it: nothing else of fars, no third party."""
    import ast
    import sys

    import fars.safe_files as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.level)
    }
    assert imported - {"__future__", "yaml"} <= set(sys.stdlib_module_names), imported
