"""Simulator throughput and memory: events/s writing JSONL files, on one pinned core.

Each scenario runs in a fresh child process pinned to CPU 0 (so the figure is one core's),
timing the simulation loop (generation, encoding, writing) and the whole command, and
reading the child's peak resident memory. Target: >= 100,000 events/s.

    .venv/bin/python benchmarks/simulator_throughput.py [--events 1000000]
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

SCENARIOS = {
    "files, clean traffic": {"output": "file", "malformed": 0.0, "duplicates": 0.0},
    "files, 1% malformed + 1% duplicates": {"output": "file", "malformed": 0.01, "duplicates": 0.01},
    "null sink (generation + JSON encoding only)": {"output": "null", "malformed": 0.0, "duplicates": 0.0},
}
TARGET = 100_000


def child(args: argparse.Namespace) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    started = time.perf_counter()
    from streamforge.config import load_config
    from streamforge.events import FraudPattern
    from streamforge.simulator.engine import Settings
    from streamforge.simulator.sinks import FileSink, NullSink
    from streamforge.simulator.traffic import simulate

    config = load_config(None)
    settings = Settings(
        seed=7, start_ms=1_793_520_000_000, sessions_per_second=args.sessions_per_second, users=50_000,
        currency="USD", fraud_rate=0.005, fraud_patterns=tuple(FraudPattern), rules=config.fraud,
        session_gap_ms=int(config.sessions.gap.total_seconds() * 1000),
        malformed_fraction=args.malformed, duplicate_fraction=args.duplicates,
    )
    with tempfile.TemporaryDirectory() as tmp:
        sink = FileSink(Path(tmp)) if args.output == "file" else NullSink()
        stats = simulate(settings, sink, until_ms=settings.start_ms + args.sim_seconds * 1000)
        sink.close()
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
    total = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"messages": stats.messages, "loop_s": stats.wall_seconds, "total_s": total,
                      "peak_mib": peak_kib / 1024, "bytes": size}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="about this many events per scenario")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", default="file", help=argparse.SUPPRESS)
    parser.add_argument("--malformed", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--duplicates", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--sessions-per-second", type=float, default=50.0, help=argparse.SUPPRESS)
    parser.add_argument("--sim-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    # About 3.6 events per session at the default profile: size the simulated span to --events.
    sessions_per_second = 50.0
    sim_seconds = args.events / (sessions_per_second * 3.6)
    rows = []
    for name, options in SCENARIOS.items():
        cmd = [sys.executable, __file__, "--child", "--sessions-per-second", str(sessions_per_second),
               "--sim-seconds", str(sim_seconds), "--output", options["output"],
               "--malformed", str(options["malformed"]), "--duplicates", str(options["duplicates"])]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        rows.append((name, result))
    header = f"{'scenario':46} {'events':>10} {'loop s':>7} {'events/s':>10} {'total s':>8} {'peak MiB':>9} {'MB out':>7}"
    print(f"Simulator throughput, one core pinned (target >= {TARGET:,} events/s)")
    print(header)
    print("-" * len(header))
    for name, r in rows:
        rate = r["messages"] / r["loop_s"]
        print(f"{name:46} {r['messages']:>10,} {r['loop_s']:>7.2f} {rate:>10,.0f} {r['total_s']:>8.2f} "
              f"{r['peak_mib']:>9.0f} {r['bytes'] / 1e6:>7.0f}")


if __name__ == "__main__":
    main()
