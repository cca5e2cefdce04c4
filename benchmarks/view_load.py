"""How fast `fars view` loads the run page of a large run, and what watching a live run costs that run.

A synthetic run folder with ``--projects`` projects (256 by default) is written through the real ledger
API and stage contracts (``tests/view/synthetic.py``): every project with five stage outputs, 20 model
calls and its artifacts. Two folders: a finished run (read from its ``run_record.json``) and a live one
(no record: summarised from its ledger, as while ``fars run`` goes, 7/8 of its projects finished).
For each, a fresh `fars view` process serves it and the figures are:

* ``browser``: headless Chromium (Playwright, Debian's binary) opening the run page: time to the
  ``load`` event of the first (cold) load and the median of later loads, from the Navigation Timing API,
  the best of the warm loads (the nearest to an idle machine), when the HTML had arrived, and how long
  the page's main thread was busy (Chromium's ``TaskDuration``, which includes waiting for a core);
* ``http``: the page's GET alone (median) and its size;
* ``summary``: the time a fresh reader takes to summarise the run from its record or ledger (the view does
  it in the background at start for ``fars.view.server.WARM_RUNS`` runs, so a first page does not wait
  for it), and to summarise it again after the run wrote to its ledger;
* ``live writes`` (live run only): a writer commits stage events at ``--write-rate`` per second for
  ``--write-s`` seconds, first with no viewer, then with the run page open and following every change;
  the writer's commit latency (median, 99th percentile) both ways and the view's CPU use meanwhile.

The machine's load average and core count are printed with the figures (this machine is shared).

    python benchmarks/view_load.py                   # 256 projects, about a minute
    python benchmarks/view_load.py --projects 1024 --repeat 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from fars.run.ledger import Ledger  # noqa: E402
from fars.view.folders import folder_key  # noqa: E402
from tests.chromium import chromium, find_chromium  # noqa: E402
from tests.view.conftest import start_view, stop  # noqa: E402
from tests.view.synthetic import STAGES, synthetic_run  # noqa: E402

NAVIGATION = "() => { const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.domContentLoadedEventEnd, n.loadEventEnd]; }"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def browser_loads(url: str, repeat: int) -> tuple[list[float], list[float], list[float]] | None:
    """Each load of the page in headless Chromium: ms to the load event, ms to the HTML's arrival, and ms of
    CPU the page's main thread spent on it (Chromium's TaskDuration: what the load costs on an idle machine).
    None without Chromium or Playwright."""
    if find_chromium() is None:
        return None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None
    loads, responses, cpu = [], [], []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        for _ in range(repeat + 1):
            page = context.new_page()  # a page of its own: its main thread's counters start at the load
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")
            page.goto(url, wait_until="load")
            response_end, _dom, load = page.evaluate(NAVIGATION)
            metrics = cdp.send("Performance.getMetrics")["metrics"]
            cpu.append(1000 * float(next(m["value"] for m in metrics if m["name"] == "TaskDuration")))
            loads.append(load)
            responses.append(response_end)
            page.close()
    return loads, responses, cpu


def http_loads(url: str, repeat: int) -> tuple[list[float], int]:
    """Seconds of each GET of the page (the first is cold), and the page's size in bytes."""
    times, size = [], 0
    with httpx.Client(timeout=120) as client:
        for _ in range(repeat + 1):
            began = time.perf_counter()
            answer = client.get(url)
            times.append(time.perf_counter() - began)
            size = len(answer.content)
            assert answer.status_code == 200, answer.text[:500]
    return times, size


def writer_latencies(run: Path, rate: float, seconds: float) -> list[float]:
    """Commit latencies (s) of a writer adding stage events at ``rate`` per second, as a run does."""
    ledger = Ledger(run / "ledger.sqlite")
    latencies = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        began = time.perf_counter()
        ledger.stage_started(f"p{i % 8:03d}", STAGES[i % len(STAGES)])
        latencies.append(time.perf_counter() - began)
        i += 1
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
    ledger.close()
    return latencies


def build_ms(run: Path) -> tuple[float, float]:
    """Milliseconds a fresh reader takes to summarise the run (nothing cached), and to do it again after the
    run wrote one more stage event; measured in a child process of its own."""
    code = (
        "import sys, time; from pathlib import Path; from fars.run.ledger import Ledger; "
        "from fars.view.folders import ServedFolders, folder_key; from fars.view.reader import RunReader; "
        "run = Path(sys.argv[1]).resolve(); s = ServedFolders([run]); s.scan(); "
        "r = RunReader(s.run(folder_key(run)), s); t = time.perf_counter(); r.snapshot(); "
        "first = time.perf_counter() - t; w = Ledger(run / 'ledger.sqlite'); w.stage_started('p000', 'review'); "
        "w.close(); r._built_at = float('-inf'); t = time.perf_counter(); r.snapshot(); "
        "print(first * 1000, (time.perf_counter() - t) * 1000)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, cwd=REPO, check=True)
    first, again = done.stdout.strip().splitlines()[-1].split()
    return float(first), float(again)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of values (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(label: str, run: Path, args: argparse.Namespace) -> None:
    """Print the load figures of one run folder (a fresh view process for it)."""
    proc, base = start_view(str(run), "--poll", "0.5")
    try:
        url = f"{base}/run/{folder_key(run.resolve())}"
        loads = browser_loads(url, args.repeat)
        times, size = http_loads(url, args.repeat)
        if loads is not None:
            load_ms, response_ms, cpu_ms = loads
            print(f"{label:9s} browser: load event {load_ms[0]:5.0f} ms cold, {statistics.median(load_ms[1:]):5.0f} ms "
                  f"warm (median of {args.repeat}, best {min(load_ms[1:]):.0f}); HTML arrived at {response_ms[0]:.0f} / "
                  f"{statistics.median(response_ms[1:]):.0f} ms; the page's main thread was busy "
                  f"{cpu_ms[0]:.0f} / {statistics.median(cpu_ms[1:]):.0f} ms")  # fmt: skip
        else:
            print(f"{label:9s} browser: skipped (no Chromium or Playwright)")
        print(f"{label:9s} http:    the page's GET {statistics.median(times) * 1000:.0f} ms (median of "
              f"{len(times)}); {size / 1024:.0f} KiB")  # fmt: skip
        first, again = build_ms(run)
        print(f"{label:9s} summary: {first:.0f} ms to build from scratch (done in the background at start), "
              f"{again:.0f} ms again after the run wrote to its ledger")  # fmt: skip
        if label == "live" and args.write_s > 0:
            alone = writer_latencies(run, args.write_rate, args.write_s)
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            watching = threading.Event()

            def watch_page() -> None:
                with chromium() as browser:
                    page = browser.new_page()
                    page.goto(url)
                    watching.set()
                    page.wait_for_timeout(args.write_s * 1000 + 1500)

            viewer = threading.Thread(target=watch_page) if loads is not None else None
            if viewer is not None:
                viewer.start()
                watching.wait(120)
            watched = writer_latencies(run, args.write_rate, args.write_s)
            if viewer is not None:
                viewer.join()
            cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            print(f"{label:9s} writes:  commit latency median {statistics.median(alone) * 1000:.2f} ms, p99 "
                  f"{quantile(alone, 0.99) * 1000:.2f} ms alone; {statistics.median(watched) * 1000:.2f} ms, p99 "
                  f"{quantile(watched, 0.99) * 1000:.2f} ms with the page open ({len(watched)} writes at "
                  f"{args.write_rate:g}/s); the view used {cpu:.0%} of a core meanwhile")  # fmt: skip
    finally:
        stop(proc)


def main() -> None:
    """Build the run folders and print the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--projects", type=int, default=256)
    p.add_argument("--repeat", type=int, default=9, help="warm loads after the first")
    p.add_argument("--write-rate", type=float, default=20.0, help="ledger writes per second of the live run")
    p.add_argument("--write-s", type=float, default=10.0, help="seconds of writing (0: skip that part)")
    args = p.parse_args()
    load1, load5, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load1:.2f} (1 min) {load5:.2f} (5 min) at start")
    with tempfile.TemporaryDirectory(prefix="fars-view-bench-") as tmp:
        began = time.perf_counter()
        finished = synthetic_run(Path(tmp) / "finished", args.projects, calls_per_stage=4)
        live = synthetic_run(Path(tmp) / "live", args.projects, finished=args.projects * 7 // 8, record=None, seed=1)
        print(f"built two runs of {args.projects} projects in {time.perf_counter() - began:.1f} s "
              f"({args.projects * len(STAGES) * 4} model calls each)")  # fmt: skip
        measure("finished", finished, args)
        measure("live", live, args)
    load1, load5, _ = os.getloadavg()
    print(f"machine: load average {load1:.2f} (1 min) {load5:.2f} (5 min) at the end")


if __name__ == "__main__":
    main()
