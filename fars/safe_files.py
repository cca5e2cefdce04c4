"""Hardened file access for every folder model-written code could have touched.

A sandboxed program may leave anything in its folder: links to host secrets or to the run's ledger,
FIFOs that block a reader forever, links to ``/dev/zero``, hard links, huge files, trees thousands of
levels deep. The harness runs as root, so it must never follow, block on or exhaust itself on them.
Everything here walks folders ``openat``-style, one component at a time with ``O_NOFOLLOW``, so no link
is followed anywhere below the folder it starts from (the folder's own path is the harness's and is
opened as given, its last component not followed):

* ``read_file`` opens non-blocking, accepts only a regular file with one link, and reads a bounded size;
* ``write_atomic`` writes a new file and renames it over the name, so it never writes through a link;
* ``open_append`` opens a log for appending, refusing links and special files;
* ``remove_tree`` removes a tree iteratively (any depth, no ``RecursionError``) without following links;
* ``fresh_dir`` recreates a folder clean before it is reused;
* ``tree_usage`` measures blocks, entries and depth of a tree (the sandbox's watchdog), links unfollowed;
* ``read_named`` reads a file a user named on the command line (a regular file, non-blocking, bounded);
* ``load_yaml`` parses untrusted YAML with limits on its size, nesting and alias expansion (no bombs).

This module imports only the standard library (and PyYAML inside ``load_yaml``), so the standalone
``review`` and ``experiments`` packages read through it too: it is the one reading path for input
from outside (run folders, papers and their sources, templates).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


class UnsafeFileError(OSError):
    """A file the harness refused to use: a link, a special file, too large, or outside its folder."""


def kind_of(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words ("a FIFO", "a symbolic link", ...)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


_kind = kind_of


def _parts(name: str | Path) -> list[str]:
    """The components of a relative name; absolute names, ``..`` and NUL bytes are refused."""
    path = Path(name)
    if path.is_absolute() or ".." in path.parts or "\0" in str(name):
        raise UnsafeFileError(errno.EPERM, f"file name {str(name)!r} leaves its folder")
    return [p for p in path.parts if p not in ("", ".")]


def _open_root(root: Path) -> int:
    """The folder ``root`` itself: its path as given, its last component not followed."""
    try:
        return os.open(root, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFileError(exc.errno, f"{root} is not a folder (a link?)") from None
        raise


def _open_dirs(root: Path, parts: list[str], *, create: bool = False) -> int:
    """An fd of the folder ``root/parts...``, walked without following a link at any component."""
    fd = _open_root(root)
    try:
        for i, part in enumerate(parts):
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = os.path.join(root, *parts[: i + 1])
                    raise UnsafeFileError(exc.errno, f"{where} is not a folder (a link?); refused") from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_folder(root: Path, name: str | Path = "") -> int:
    """An fd of the folder ``root/name``, walked from ``root`` without following a link at any component
    (``UnsafeFileError`` names the one that is a link or no folder; ``FileNotFoundError`` when missing)."""
    return _open_dirs(root, _parts(name))


def open_regular(root: Path, name: str | Path, *, allow_hard_links: bool = False) -> tuple[int, os.stat_result]:
    """An fd (read-only, non-blocking) of regular file ``root/name`` and its ``fstat``: walked from ``root``
    without following links, refusing special files and (unless allowed) hard links with ``UnsafeFileError``.
    The caller closes the fd; ``read_fd`` reads it bounded."""
    return _open_regular(root, name, allow_links=allow_hard_links)


def read_fd(fd: int, max_bytes: int, *, name: str = "the file") -> bytes:
    """At most ``max_bytes`` from an open file; ``UnsafeFileError`` if it holds (or grows to) more."""
    chunks, total = [], 0
    while total <= max_bytes:
        chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > max_bytes:
        raise UnsafeFileError(errno.EFBIG, f"{name} grew past the {max_bytes:,} bytes allowed while read")
    return b"".join(chunks)


def _open_regular(root: Path, name: str | Path, *, allow_links: bool = False) -> tuple[int, os.stat_result]:
    """An fd of regular file ``root/name`` opened for reading without following links or blocking."""
    parts = _parts(name)
    if not parts:
        raise UnsafeFileError(errno.EINVAL, f"no file name given below {root}")
    where = os.path.join(root, *parts)
    dir_fd = _open_dirs(root, parts[:-1])
    try:
        # looked at first, so a link, FIFO or device is refused without being opened at all
        seen = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(seen.st_mode):
            raise UnsafeFileError(errno.ELOOP, f"{where} is a symbolic link; refused")
        if not stat.S_ISREG(seen.st_mode):
            raise UnsafeFileError(errno.EPERM, f"{where} is {_kind(seen.st_mode)}, not a regular file; refused")
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise UnsafeFileError(
                    exc.errno, f"{where} became a link or special file as it was opened; refused"
                ) from None
            raise
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        problem = f"{where} was replaced as it was opened; refused"
    elif info.st_nlink > 1 and not allow_links:
        problem = f"{where} has {info.st_nlink} hard links (one may point outside its folder); refused"
    if problem is not None:
        os.close(fd)
        raise UnsafeFileError(errno.EPERM, problem)
    return fd, info


def read_file(
    root: Path, name: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, allow_hard_links: bool = False
) -> bytes:
    """The bytes of regular file ``root/name``, refusing links, special files and more than ``max_bytes``.

    Opened non-blocking (a FIFO cannot hang the caller) and read at most ``max_bytes + 1`` bytes, so a
    file that grows or lies about its size is refused rather than read without end.
    """
    fd, info = _open_regular(root, name, allow_links=allow_hard_links)
    try:
        where = os.path.join(root, name)
        if info.st_size > max_bytes:
            raise UnsafeFileError(errno.EFBIG, f"{where} is {info.st_size:,} bytes, over the {max_bytes:,} allowed")
        return read_fd(fd, max_bytes, name=where)
    finally:
        os.close(fd)


def read_text(root: Path, name: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """``read_file`` decoded as UTF-8 (undecodable bytes replaced)."""
    return read_file(root, name, max_bytes=max_bytes).decode("utf-8", errors="replace")


def sha256_file(root: Path, name: str | Path, *, max_bytes: int = 16 * DEFAULT_MAX_BYTES) -> str:
    """The sha256 of regular file ``root/name`` (streamed, bounded), refusing links and special files."""
    fd, info = _open_regular(root, name, allow_links=True)
    try:
        if info.st_size > max_bytes:
            raise UnsafeFileError(errno.EFBIG, f"{os.path.join(root, name)} is over {max_bytes:,} bytes")
        digest, total = hashlib.sha256(), 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFileError(errno.EFBIG, f"{os.path.join(root, name)} grew past {max_bytes:,} bytes")
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def write_atomic(root: Path, name: str | Path, data: bytes | str, *, mode: int = 0o644) -> Path:
    """Write ``root/name`` as a new file renamed over the old name: never written through a link.

    Missing folders below ``root`` are created; a link or special file standing at the name is
    replaced (and logged), never followed. Readers see the old file or the new one, never half.
    """
    parts = _parts(name)
    if not parts:
        raise UnsafeFileError(errno.EINVAL, f"no file name given below {root}")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    dir_fd = _open_dirs(root, parts[:-1], create=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                raise UnsafeFileError(
                    errno.EISDIR, f"{os.path.join(root, name)} is a folder; cannot write a file there"
                )
            if not stat.S_ISREG(info.st_mode):
                log.warning("replacing %s at %s (it was planted, not written by FARS)", _kind(info.st_mode), name)
        tmp = f".{parts[-1]}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
            os.replace(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
    return Path(root, *parts)


def open_append(root: Path, name: str | Path) -> BinaryIO:
    """``root/name`` opened for appending (created if missing), refusing links and special files."""
    parts = _parts(name)
    if not parts:
        raise UnsafeFileError(errno.EINVAL, f"no file name given below {root}")
    dir_fd = _open_dirs(root, parts[:-1], create=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        try:
            fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise UnsafeFileError(exc.errno, f"{os.path.join(root, name)} is a link or special file") from None
            raise
    finally:
        os.close(dir_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise UnsafeFileError(errno.EPERM, f"{os.path.join(root, name)} is {_kind(info.st_mode)}; refused")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def check_plain(path: Path) -> None:
    """Raise ``UnsafeFileError`` when ``path`` exists but is not a regular file of its own (a link, FIFO, ...)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(errno.EPERM, f"{path} is {_kind(info.st_mode)}, not a regular file")


# -- trees ---------------------------------------------------------------------------------------


@dataclass
class _Frame:
    name: str
    dev: int
    ino: int
    pending: list[str] | None = None  # subfolders still to remove (None: not scanned yet)


_MAX_REFILLS = 1000  # folders found refilled after they were emptied (only a live writer does that)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything below it, without following links, at any depth.

    Iterative, holding one folder open at a time (a 3,000-level tree costs neither the stack nor 3,000
    file descriptors); going back up it checks that ``..`` is the very folder it came down from. A
    link or file at ``path`` is removed itself; a missing ``path`` is fine.
    """
    path = Path(path)
    parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            info = os.stat(path.name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(path.name, dir_fd=parent_fd)
            return
        _remove_below(parent_fd, path)
    finally:
        os.close(parent_fd)


def _let_owner_in(fd: int) -> None:
    """Give the owner full rights on an open folder again (a program may have removed them to stop its
    clean-up); root needs none, and a folder of someone else stays as it is."""
    if os.geteuid() != 0:
        with contextlib.suppress(OSError):
            os.chmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) | stat.S_IRWXU)


def _open_child_dir(fd: int, name: str) -> int:
    """A subfolder opened without following a link; one its owner made unreadable is opened again after
    giving the owner its rights back (only the owner can, so this reaches nothing of anyone else)."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=fd)
    except PermissionError:
        if os.geteuid() == 0:
            raise
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise
        os.chmod(name, stat.S_IMODE(info.st_mode) | stat.S_IRWXU, dir_fd=fd)
        return os.open(name, _DIR_FLAGS, dir_fd=fd)


def _scan(fd: int, frame: _Frame) -> None:
    """Unlink every non-folder entry of ``fd`` and note its subfolders in ``frame``."""
    _let_owner_in(fd)
    frame.pending = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                frame.pending.append(entry.name)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)


def _remove_below(parent_fd: int, path: Path) -> None:
    fd = _open_child_dir(parent_fd, path.name)
    info = os.fstat(fd)
    frames = [_Frame(path.name, info.st_dev, info.st_ino)]
    refills = 0
    try:
        while frames:
            top = frames[-1]
            if top.pending is None:
                _scan(fd, top)
            if top.pending:
                child = top.pending.pop()
                try:
                    child_fd = _open_child_dir(fd, child)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    os.unlink(child, dir_fd=fd)  # it became a link or file since the scan
                    continue
                child_info = os.fstat(child_fd)
                os.close(fd)
                fd = child_fd
                frames.append(_Frame(child, child_info.st_dev, child_info.st_ino))
                continue
            # ``top`` is empty: step up to its parent (checked to be the folder we came from) and remove it
            if len(frames) == 1:
                up_fd, up_id = parent_fd, None
            else:
                up_fd = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                up_id = (frames[-2].dev, frames[-2].ino)
            os.close(fd)
            fd = up_fd if up_id is not None else -1
            if up_id is not None:
                up_info = os.fstat(fd)
                if (up_info.st_dev, up_info.st_ino) != up_id:
                    raise UnsafeFileError(errno.EBUSY, f"{path}: a folder was moved while it was being removed")
            try:
                os.rmdir(top.name, dir_fd=up_fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or refills >= _MAX_REFILLS:
                    raise
                refills += 1  # something was written into it meanwhile: empty it again
                if up_id is None:
                    fd = os.open(top.name, _DIR_FLAGS, dir_fd=parent_fd)
                    top.pending = None
                    continue
                frames[-2].pending = [*(frames[-2].pending or []), top.name]
            frames.pop()
    finally:
        if fd >= 0:
            os.close(fd)


def fresh_dir(path: Path) -> Path:
    """``path`` as a new, empty folder: whatever stood there (files, links, a deep tree) removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_tree(path)
    os.mkdir(path, 0o755)
    return path


@dataclass(frozen=True)
class TreeUsage:
    """What a folder tree holds: allocated bytes, entries (inodes) and the deepest level reached.

    ``complete`` is False when the walk stopped early at a bound (the figures are then lower bounds).
    """

    bytes: int
    entries: int
    depth: int
    complete: bool


def tree_usage(
    path: Path, *, max_depth: int = 64, stop_bytes: int | None = None, stop_entries: int | None = None
) -> TreeUsage:
    """Blocks, entries and depth of the tree at ``path``; links are counted, never followed.

    The walk stops early (``complete=False``) once it passes ``stop_bytes`` or ``stop_entries``, or
    finds a folder deeper than ``max_depth`` (reported as ``max_depth + 1``), so measuring a hostile
    tree costs at most that much. It holds one descriptor per level, at most ``max_depth + 1``.
    """
    total = entries = deepest = 0
    walk = _walk(path, max_depth)
    with contextlib.closing(walk):  # an early return closes the folders it holds at once
        for info, depth in walk:
            total += info.st_blocks * 512
            entries += 1
            deepest = max(deepest, depth)
            if depth > max_depth:
                return TreeUsage(total, entries, depth, False)
            if (stop_bytes is not None and total > stop_bytes) or (stop_entries is not None and entries > stop_entries):
                return TreeUsage(total, entries, deepest, False)
    return TreeUsage(total, entries, deepest, True)


def chown_tree(path: Path, uid: int, gid: int, *, max_depth: int = 64) -> None:
    """Give ``path`` and everything below it to ``uid``:``gid`` without following links."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for _info, depth, dir_fd, name in _walk_entries(path, max_depth):
        if depth > max_depth:
            raise UnsafeFileError(errno.ELOOP, f"{path} is deeper than {max_depth} levels; refusing to hand it over")
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)


def _walk(path: Path, max_depth: int) -> Generator[tuple[os.stat_result, int], None, None]:
    walk = _walk_entries(path, max_depth)
    with contextlib.closing(walk):
        for info, depth, _fd, _name in walk:
            yield info, depth


def _walk_entries(path: Path, max_depth: int) -> Generator[tuple[os.stat_result, int, int, str], None, None]:
    """(lstat, depth, folder fd, name) of every entry below ``path``; folders deeper than ``max_depth``
    are yielded, not entered. Entries that vanish during the walk are skipped."""
    try:
        root = _open_root(Path(path))
    except FileNotFoundError:
        return
    try:
        stack: list[tuple[int, Any]] = [(root, os.scandir(root))]
    except OSError:
        os.close(root)
        raise
    try:
        while stack:
            fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                entries.close()
                os.close(fd)
                stack.pop()
                continue
            try:
                info = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            depth = len(stack)
            yield info, depth, fd, entry.name
            if stat.S_ISDIR(info.st_mode) and depth <= max_depth:
                try:
                    child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue  # vanished or became a link since the stat: not followed
                try:
                    stack.append((child, os.scandir(child)))
                except OSError:
                    os.close(child)
    finally:
        for fd, entries in stack:
            entries.close()
            os.close(fd)


# -- input a user names, and YAML from outside ----------------------------------------------------------

YAML_MAX_BYTES = 1 << 20  # a config or template spec is a few KB; a megabyte is already absurd
YAML_MAX_NODES = 100_000  # scalars, lists and maps after aliases are expanded (a "billion laughs" is 10^9)
YAML_MAX_DEPTH = 64


class UnsafeYamlError(ValueError):
    """YAML refused before it could cost memory or time: too large, too deep, or aliases that expand too far."""


def read_named(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a file a user named (``fars review PAPER``): followed as named, but only a regular file,
    opened non-blocking (a FIFO cannot hang the command) and read to at most ``max_bytes``."""
    resolved = Path(path).resolve()  # the user's own link is theirs to follow; nothing below it is
    return read_file(resolved.parent, resolved.name, max_bytes=max_bytes, allow_hard_links=True)


def load_yaml(
    text: str | bytes,
    *,
    source: str = "YAML",
    max_bytes: int = YAML_MAX_BYTES,
    max_nodes: int = YAML_MAX_NODES,
    max_depth: int = YAML_MAX_DEPTH,
) -> Any:
    """``yaml.safe_load`` for untrusted text, refusing (``UnsafeYamlError``, naming ``source``) text over
    ``max_bytes``, nesting deeper than ``max_depth``, or more than ``max_nodes`` nodes once aliases are
    expanded: PyYAML shares an aliased node, but whatever walks the result (a renderer, ``json.dumps``,
    OmegaConf) expands it, which is how 1.7 KB became gigabytes."""
    import yaml

    if len(text) > max_bytes:
        raise UnsafeYamlError(f"{source} is {len(text):,} bytes, over the {max_bytes:,} allowed for YAML")
    if _bracket_depth(text.encode("utf-8", errors="replace") if isinstance(text, str) else text) > max_depth:
        # PyYAML's scanner works per open bracket for every token: deep flow nesting is quadratic before it recurses
        raise UnsafeYamlError(f"{source} nests deeper than {max_depth} levels of brackets; refused")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml's scanner where PyYAML was built with it
    try:
        try:
            node = loader.get_single_node()  # PyYAML's composer recurses: deep nesting ends here, not in a crash
        except RecursionError:
            raise UnsafeYamlError(f"{source} nests deeper than {max_depth} levels; refused") from None
        if node is None:
            return None
        _check_yaml_tree(node, source, max_nodes, max_depth)
        return loader.construct_document(node)
    finally:
        loader.dispose()


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _bracket_depth(raw: bytes) -> int:
    """The deepest nesting of flow brackets (``[`` and ``{``) in ``raw``, in one linear pass (quotes not parsed:
    a bracket inside a string counts too, which only errs on the side of refusing)."""
    depth = deepest = 0
    for byte in raw.translate(None, _NOT_BRACKETS):
        depth = depth + 1 if byte in b"[{" else max(0, depth - 1)
        deepest = max(deepest, depth)
    return deepest


def _check_yaml_tree(root: Any, source: str, max_nodes: int, max_depth: int) -> None:
    """Count the nodes of a composed YAML tree with aliases expanded (memoised per shared node, iteratively)."""
    import yaml

    sizes: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if depth > max_depth:
            raise UnsafeYamlError(f"{source} nests deeper than {max_depth} levels; refused")
        if id(node) in sizes:
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
        if not expanded:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes.get(id(c), 1) for c in children)
        if total > max_nodes:
            raise UnsafeYamlError(
                f"{source} expands to over {max_nodes:,} values (anchors and aliases repeated: a YAML bomb?); refused"
            )
        sizes[id(node)] = total
