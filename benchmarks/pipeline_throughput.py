"""Throughput and peak memory of the Beam jobs in batch mode on the local runner.

    python benchmarks/pipeline_throughput.py [--events 1000000] [--runs 1] [--keep DIR]

Simulates the input once (seed 42, 0.5% malformed and 0.5% duplicate messages, as in
`make demo`), then runs each job in a fresh process pinned to one core and prints a table:
input events, seconds in the pipeline, events/s, wall time of the whole process (interpreter
start and imports included), peak RSS. Targets (issue 3): >= 25,000 events/s per job on one
core, peak RSS < 1.5 GB.

- sessions and all: --events clickstream events (and, for all, the orders of the same span).
- revenue and fraud: --events order events, from a longer simulation whose clickstream is
  discarded (orders are about 5% of the traffic).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The child: run one job and print how long the pipeline took and what it counted.
RUN = """
import json, sys, time
from beam_pipelines.common.io import parse_input, parse_warehouse
from beam_pipelines.requests import STREAMS, JobRequest
from beam_pipelines.runner import pipeline_options, run
from streamforge.config import load_config
job, directory, warehouse = sys.argv[1:4]
inputs = {s: parse_input(f"file://{directory}/{s}.jsonl") for s in STREAMS[job]}
started = time.perf_counter()
request = JobRequest(job, inputs, parse_warehouse(f"duckdb://{warehouse}"), load_config())
report = run(request, pipeline_options(request))
print(json.dumps({"seconds": time.perf_counter() - started, "counters": report.counters,
                  "accounting": {s: report.accounting(s) for s in STREAMS[job]}}))
"""
CLICKS_PER_HOUR = 38_600  # the default traffic
ORDERS_PER_HOUR = 1_950


def simulate(directory: Path, hours: float, discard_clicks: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if discard_clicks:
        (directory / "clickstream.jsonl").symlink_to(os.devnull)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streamforge",
            "simulate",
            "--output",
            f"file://{directory}",
            "--duration",
            f"{hours * 3600:.0f}s",
            "--malformed",
            "0.005",
            "--duplicates",
            "0.005",
            "-q",
        ],
        check=True,
        cwd=ROOT,
    )


def lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def truncate(path: Path, count: int) -> None:
    with path.open("rb") as fh:
        head = [line for _, line in zip(range(count), fh)]
    path.write_bytes(b"".join(head))


def run(job: str, directory: Path, workdir: Path) -> tuple[float, float, float, dict]:
    """(pipeline seconds, wall seconds, peak RSS MiB, accounting) of one job in a fresh process."""
    warehouse = workdir / f"{job}.duckdb"
    warehouse.unlink(missing_ok=True)
    started = time.perf_counter()
    child = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", RUN, job, str(directory), str(warehouse)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{job} failed with exit code {os.waitstatus_to_exitcode(status)}")
    result = json.loads(output)
    for stream, (read, unique, dead, duplicates) in result["accounting"].items():
        assert read == unique + dead + duplicates, (job, stream, result["accounting"])
    return result["seconds"], wall, usage.ru_maxrss / 1024, result["accounting"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="runs per job; the table shows the median")
    parser.add_argument("--keep", type=Path, help="keep the generated data here (and reuse it next time)")
    parser.add_argument("--jobs", default="sessions,revenue,fraud,all")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="sf-bench-"))
    traffic, orders_only = workdir / f"traffic-{args.events}", workdir / f"orders-{args.events}"
    if not (traffic / "orders.jsonl").exists():
        print(f"simulating {args.events:,} clickstream events ...", file=sys.stderr)
        simulate(traffic, args.events / CLICKS_PER_HOUR * 1.03)
        truncate(traffic / "clickstream.jsonl", args.events)
    if not (orders_only / "orders.jsonl").exists():
        print(f"simulating {args.events:,} order events (the clickstream is discarded) ...", file=sys.stderr)
        simulate(orders_only, args.events / ORDERS_PER_HOUR * 1.03, discard_clicks=True)
        truncate(orders_only / "orders.jsonl", args.events)
    inputs = {
        "sessions": (traffic, ("clickstream",)),
        "revenue": (orders_only, ("orders",)),
        "fraud": (orders_only, ("orders",)),
        "all": (traffic, ("clickstream", "orders")),
    }
    rows = []
    for job in args.jobs.split(","):
        directory, streams = inputs[job]
        events = sum(lines(directory / f"{s}.jsonl") for s in streams)
        results = [run(job, directory, workdir) for _ in range(args.runs)]
        rates = sorted(events / r[0] for r in results)
        wall = statistics.median(r[1] for r in results)
        peak = max(r[2] for r in results)
        print(f"{job}: {events:,} events, {[round(r[0], 1) for r in results]} s, {results[0][3]}", file=sys.stderr)
        rows.append(
            (job, events, statistics.median(rates), f"{rates[0]:,.0f}-{rates[-1]:,.0f}", wall, events / wall, peak)
        )
    print(
        f"{'job':<9} {'events':>10} {'events/s':>9} {'range':>15} {'wall s':>7} {'events/s (wall)':>15} {'peak RSS MiB':>12}"
    )
    for job, events, rate, spread, wall, wall_rate, peak in rows:
        print(f"{job:<9} {events:>10,} {rate:>9,.0f} {spread:>15} {wall:>7.1f} {wall_rate:>15,.0f} {peak:>12,.0f}")
    print(
        f"(one core via taskset; events/s over the pipeline's construction and run, median and range of {args.runs}"
        f" run(s); wall s adds interpreter start and imports)"
    )
    if args.keep is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
