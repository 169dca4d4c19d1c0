"""Kafka input throughput: each job reading the same events from Kafka and from files.

    python benchmarks/kafka_input.py [--duration 12h] [--formats json,confluent] [--runs 1]

The simulator writes --duration of simulated traffic (the embedded defaults, seed 42) to JSONL files and to a local Tansu broker (3 partitions per topic) in each
format. Then, each in a fresh process:

- bounded: `run JOB` from the files and from `kafka://...?until=end`, for sessions, revenue,
  fraud and all: wall time (construction included) and events/s;
- streaming: `run all` streaming from the whole backlog on Kafka (the local feed, the
  patched DirectRunner), stopped once it has taken everything: the rate it took messages at,
  from its first batch to its last, which is the most it can sustain (a live producer only
  adds load).

It prints a table; no targets here beyond the issue's: the Kafka path should cost about what
the file path costs (the same parse and jobs after the read).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamforge.services import start_kafka_broker  # noqa: E402

JOBS = ("sessions", "revenue", "fraud", "all")
STREAM_OF = {"sessions": "clickstream", "revenue": "orders", "fraud": "orders"}

# The streaming child: `run all` from Kafka until it has taken every message, printing its rate.
STREAM = """
import json, sys, time
from beam_pipelines.requests import analytics_request
from beam_pipelines.runner import pipeline_options, run
from streamforge.config import load_config
config, url, warehouse, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
request = analytics_request("all", load_config(config), warehouse=f"duckdb://{warehouse}", input_url=url)
samples = []
def progress(counts):
    samples.append((time.time(), sum(c.acked for c in counts.values())))
started = time.time()
report = run(request, pipeline_options(request), should_stop=lambda: bool(samples) and samples[-1][1] >= expected,
             on_progress=progress)
moving = [s for s in samples if 0 < s[1]]  # from the first batch taken to the last
rate = (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0]) if len(moving) > 1 else 0.0
read = sum(report.accounting(s)[0] for s in ("clickstream", "orders"))
print(json.dumps({"rate": rate, "read": read, "seconds": time.time() - started}))
"""


def timed(command: list[str], env: dict[str, str], *, check: bool = True) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode and check:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    if done.returncode:
        return -1.0, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    return time.perf_counter() - started, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", default="12h")
    parser.add_argument("--formats", default="json,confluent")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    streamforge = [sys.executable, "-m", "streamforge"]
    env = {**os.environ}
    env.pop("STREAMFORGE_CONFIG", None)
    rows, failures = [], []
    with tempfile.TemporaryDirectory(prefix="sf-kafka-bench-") as tmp:
        work = Path(tmp)
        broker = start_kafka_broker(work / "tansu.log")
        try:
            files = work / "files"
            _, out = timed(
                [*streamforge, "simulate", "--output", f"file://{files}", "--duration", args.duration, "--quiet"], env
            )
            events = {s: sum(1 for _ in (files / f"{s}.jsonl").open("rb")) for s in ("clickstream", "orders")}
            for fmt in args.formats.split(","):
                config = work / f"{fmt}.toml"
                config.write_text(f'[topics]\nclickstream = "clicks-{fmt}"\norders = "orders-{fmt}"\n')
                timed(
                    [
                        *streamforge,
                        "--config",
                        str(config),
                        "simulate",
                        "--output",
                        f"kafka://{broker.address}",
                        "--format",
                        fmt,
                        "--duration",
                        args.duration,
                        "--quiet",
                    ],
                    env,
                )
                for job in JOBS:
                    count = sum(events.values()) if job == "all" else events[STREAM_OF[job]]
                    for source in ("files", f"kafka {fmt}"):
                        if source == "files" and fmt != args.formats.split(",")[0]:
                            continue
                        url = (
                            (f"file://{files}" if job == "all" else f"file://{files / (STREAM_OF[job] + '.jsonl')}")
                            if source == "files"
                            else f"kafka://{broker.address}?until=end"
                        )
                        best = min(
                            timed(
                                [
                                    *streamforge,
                                    "--config",
                                    str(config),
                                    "run",
                                    job,
                                    "--input",
                                    url,
                                    "--warehouse",
                                    f"duckdb://{work / f'{job}-{fmt}-{source[:5]}.duckdb'}",
                                    "--quiet",
                                ],
                                env,
                            )[0]
                            for _ in range(args.runs)
                        )
                        rows.append((job, source, "batch", count, best, count / best))
                seconds, out = timed(
                    [
                        sys.executable,
                        "-c",
                        STREAM,
                        str(config),
                        f"kafka://{broker.address}?group=bench",
                        str(work / f"streaming-{fmt}.duckdb"),
                        str(sum(events.values())),
                    ],
                    env,
                    check=False,
                )
                if seconds < 0:
                    failures.append(f"streaming from the {fmt} backlog failed: {out}")
                    continue
                result = json.loads(out.strip().splitlines()[-1])
                rows.append(("all", f"kafka {fmt}", "streaming", result["read"], result["seconds"], result["rate"]))
        finally:
            broker.stop()
    print(
        f"\nKafka input against files, {args.duration} simulated ({sum(events.values()):,} messages; "
        f"clickstream {events['clickstream']:,}, orders {events['orders']:,}); best of {args.runs}"
    )
    print("job | input | mode | messages | seconds | events/s")
    for job, source, mode, count, seconds, rate in rows:
        print(f"{job:8} | {source:15} | {mode:9} | {count:8,} | {seconds:7.1f} | {rate:8,.0f}")
    print(
        "(batch: wall time of `streamforge run` with construction; streaming: messages taken per second "
        "from a backlog, first batch to last)"
    )
    for failure in failures:
        print(f"  {failure}")


if __name__ == "__main__":
    main()
