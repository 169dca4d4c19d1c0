"""Simulator throughput and memory: events/s writing JSONL files, on one pinned core.

Each scenario runs in a fresh child process pinned to one CPU (so the figure is one
core's), timing the simulation loop (generation, encoding, writing) and the whole process,
and reading the child's peak resident memory. Target: >= 100,000 events/s.

    .venv/bin/python benchmarks/simulator_throughput.py [--events 1000000] [--cpu 0]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# name: (output, sessions/s, registered users, malformed fraction, duplicate fraction)
SCENARIOS = {
    "files, default traffic (3 sessions/s)": ("file", 3.0, 50_000, 0.0, 0.0),
    "files, default + 1% malformed + 1% duplicates": ("file", 3.0, 50_000, 0.01, 0.01),
    "files, busy shop (50 sessions/s, 1M users)": ("file", 50.0, 1_000_000, 0.0, 0.0),
    "null sink (generation + JSON encoding only)": ("null", 3.0, 50_000, 0.0, 0.0),
}
TARGET = 100_000
EVENTS_PER_SESSION = 3.6  # at the default traffic profile


def child(args: argparse.Namespace) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    started = time.perf_counter()
    from streamforge.config import load_config
    from streamforge.events import FraudPattern
    from streamforge.simulator.engine import Settings
    from streamforge.simulator.sinks import FileSink, NullSink
    from streamforge.simulator.traffic import simulate

    config = load_config(None)
    settings = Settings(
        seed=7,
        start_ms=1_793_520_000_000,
        sessions_per_second=args.sessions_per_second,
        users=args.users,
        currency="USD",
        fraud_rate=0.005,
        fraud_patterns=tuple(FraudPattern),
        rules=config.fraud,
        session_gap_ms=int(config.sessions.gap.total_seconds() * 1000),
        malformed_fraction=args.malformed,
        duplicate_fraction=args.duplicates,
    )
    sim_seconds = args.events / (args.sessions_per_second * EVENTS_PER_SESSION)
    with tempfile.TemporaryDirectory() as tmp:
        sink = FileSink(Path(tmp)) if args.output == "file" else NullSink()
        stats = simulate(settings, sink, until_ms=settings.start_ms + sim_seconds * 1000)
        close_started = time.perf_counter()
        sink.close()
        loop_s = stats.wall_seconds + time.perf_counter() - close_started  # the last writes are flushed on close
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "messages": stats.messages,
                "loop_s": loop_s,
                "total_s": time.perf_counter() - started,
                "peak_mib": peak_kib / 1024,
                "bytes": size,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="about this many events per scenario")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU each run is pinned to")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="file", help=argparse.SUPPRESS)
    parser.add_argument("--sessions-per-second", type=float, default=3.0, help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=50_000, help=argparse.SUPPRESS)
    parser.add_argument("--malformed", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--duplicates", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for name, (output, sessions_per_second, users, malformed, duplicates) in SCENARIOS.items():
        command = [
            sys.executable,
            __file__,
            "--child",
            "--events",
            str(args.events),
            "--cpu",
            str(args.cpu),
            "--output",
            output,
            "--sessions-per-second",
            str(sessions_per_second),
            "--users",
            str(users),
            "--malformed",
            str(malformed),
            "--duplicates",
            str(duplicates),
        ]
        rows.append((name, json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)))
    header = (
        f"{'scenario':48} {'events':>10} {'loop s':>7} {'events/s':>10} {'total s':>8} {'peak MiB':>9} {'MB out':>7}"
    )
    print(f"Simulator throughput, one core (CPU {args.cpu}) pinned; target >= {TARGET:,} events/s")
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:48} {r['messages']:>10,} {r['loop_s']:>7.2f} {r['messages'] / r['loop_s']:>10,.0f} "
            f"{r['total_s']:>8.2f} {r['peak_mib']:>9.0f} {r['bytes'] / 1e6:>7.0f}"
        )


if __name__ == "__main__":
    main()
