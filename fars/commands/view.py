"""``fars view [DIR ...] [--host H] [--port P]``: the factory, live in a browser.

Serves run folders, sweep folders or whole ``outputs/`` trees read-only over HTTP (127.0.0.1 by
default): every run and sweep, a run's board updating while ``fars run`` goes, each project's
hypotheses, plan, training curves, code, paper, review and model calls, and comparisons.
Exit status: 0 stopped (Ctrl-C or SIGTERM), 2 bad input (no such folder, the port is taken).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fars.commands.configured import UsageError

DEFAULT_PORT = 8765
DEFAULT_DIRS = ("outputs", "multirun")


def roots_from(dirs: list[str]) -> list[Path]:
    """The folders to serve: those given (each must be a folder), else ./outputs and ./multirun where present."""
    if not dirs:
        found = [Path(d) for d in DEFAULT_DIRS if Path(d).is_dir()]
        if not found:
            raise UsageError(
                "no DIR given and no outputs/ or multirun/ in this folder; give a run folder, a sweep folder "
                "or a folder of runs, e.g. fars view outputs/2026-01-01/12-00-00"
            )
        return found
    roots = []
    for text in dirs:
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UsageError(f"{text}: no such folder; give a run folder (outputs/DATE/TIME), a sweep or outputs/")
        roots.append(path)
    return roots


def main(args: list[str]) -> int:
    """Serve the view until interrupted."""
    p = argparse.ArgumentParser(
        prog="fars view",
        description="Serve runs read-only in a browser: every run and sweep, live boards, projects, papers, comparisons.",
        epilog="From a cluster: run it there (127.0.0.1), then on your machine `ssh -N -L 8765:127.0.0.1:8765 HOST` "
        "and open http://127.0.0.1:8765/",
    )
    p.add_argument(
        "dirs",
        nargs="*",
        metavar="DIR",
        help="run folders, sweep folders or folders of runs (default: ./outputs ./multirun)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument(
        "--poll", type=float, default=0.5, metavar="SECONDS", help="how often an open page checks its run for changes"
    )
    ns = p.parse_args(args)
    if not 0 <= ns.port <= 65535:
        raise UsageError(f"--port {ns.port}: give a port from 0 to 65535")
    if ns.poll <= 0:
        raise UsageError(f"--poll {ns.poll}: give a positive number of seconds")
    roots = roots_from(ns.dirs)

    from fars.view.server import allowed_hosts, create_app, listen, serve, url_of

    try:
        sock = listen(ns.host, ns.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {ns.host}:{ns.port} ({exc.strerror or exc}); pass another --port (0 picks a free one)"
        ) from None
    app = create_app(roots, ns.host, ns.poll)
    if allowed_hosts(ns.host) == ["*"]:
        print(
            f"fars view: listening on {ns.host}, not loopback: anyone who can reach this port can read these runs "
            "(there is no login); prefer the default 127.0.0.1 and SSH port forwarding",
            file=sys.stderr,
        )
    print(f"fars view: serving {', '.join(str(r) for r in roots)} at {url_of(sock)}  (Ctrl-C stops it)", flush=True)
    stopped_by = serve(app, sock)
    print(f"fars view: stopped{f' ({stopped_by})' if stopped_by else ''}", flush=True)
    return 0
