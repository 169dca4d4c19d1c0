"""Sustained throughput of the local streaming path, at rising offered rates, until it falls behind.

    python benchmarks/live_streaming.py [--rates 250,500,1000,1500,2000] [--seconds 40] [--trace-every S]

For each rate: a Pub/Sub emulator project with the deployment's topics and subscriptions
(streamforge.topology); `run all` streaming from them into DuckDB (the local feed, the patched
DirectRunner), publishing fraud alerts; the simulator in real-time mode (`--rate R`) for
--seconds. It prints a table: the offered rate (what the simulator published per second),
the rate the pipeline took (acknowledged per second over the publishing window, after a 5 s
warm-up), the backlog left when publishing ended, CPU (% of one core) of the pipeline, the
emulator and the simulator, the pipeline's peak RSS, how long the drain took after Ctrl-C,
and event -> alert latency (p50, p99: the alert's publish time minus its order's event time;
events are stamped with the wall clock at publish; the simulator runs with 5% fraud cases,
which take minutes of simulated shopping to complete, so few alerts land in a short run:
benchmarks/live_latency.py measures alert latency at the webhook with injected cases). The knee is the first rate whose backlog grows.
Target (issue 18): 1,000 events/s sustained, never below 500; alert p99 < 1 s at 500/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamforge.config import load_config  # noqa: E402
from streamforge.pubsub_setup import create_topology  # noqa: E402
from streamforge.services import start_pubsub_emulator  # noqa: E402
from streamforge.topology import topology  # noqa: E402

# The child: `run all` streaming until SIGINT, printing the feed's counts twice a second.
RUN = """
import json, sys, time
from beam_pipelines.requests import analytics_request
from beam_pipelines.runner import pipeline_options, run
from streamforge.config import load_config
from streamforge.shutdown import stop_on_signals
project, warehouse = sys.argv[1:3]
sub = f"pubsub://projects/{project}/subscriptions/streamforge-analytics"
request = analytics_request("all", load_config(), warehouse=f"duckdb://{warehouse}", clickstream=sub + "-clickstream",
                            orders=sub + "-orders", alerts_topic=f"projects/{project}/topics/fraud-alerts")
def progress(counts):
    print(json.dumps({"t": time.time(), "acked": sum(c.acked for c in counts.values()),
                      "pulled": sum(c.pulled for c in counts.values())}), flush=True)
with stop_on_signals() as stop:
    report = run(request, pipeline_options(request), should_stop=stop, on_progress=progress)
print(json.dumps({"t": time.time(), "done": True, "read": {s: report.accounting(s) for s in ("clickstream", "orders")}}),
      flush=True)
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (the emulator's launcher runs Java as a child)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.getpgid(int(proc.name)) == pid:
                    total += cpu_seconds(int(proc.name))
            except (OSError, IndexError):
                pass
    return total


def one_rate(rate: int, seconds: float, emulator_pid: int, work: Path, trace_every: float) -> dict:
    from google.cloud import pubsub_v1

    project = f"bench-rate-{rate}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    create_topology(publisher, subscriber, project, topology(load_config()))
    alerts = subscriber.create_subscription(
        name=f"projects/{project}/subscriptions/bench-alerts", topic=f"projects/{project}/topics/fraud-alerts"
    ).name
    child = subprocess.Popen(
        [sys.executable, "-c", RUN, project, str(work / f"warehouse-{rate}.duckdb")],
        stdout=subprocess.PIPE,
        stderr=open(work / f"run-{rate}.log", "wb"),
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    samples: list[dict] = []
    reader = threading.Thread(target=lambda: samples.extend(json.loads(line) for line in child.stdout), daemon=True)
    reader.start()
    time.sleep(8)  # the pipeline starts (imports, construction)
    cpu0, emu0, t0 = cpu_seconds(child.pid), group_cpu(emulator_pid), time.time()
    sim0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamforge",
            "simulate",
            "--output",
            f"pubsub://{project}",
            "--rate",
            str(rate),
            "--start",
            "now",
            "--duration",
            f"{seconds:.0f}s",
            "--seed",
            str(rate),
            "--fraud-rate",
            "0.05",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = _trace(simulator, child.pid, samples, t0, trace_every)
    if simulator.returncode:
        sys.exit(f"the simulator failed: {output[-2000:]}")
    t1 = time.time()
    sim1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the simulator: the only child waited for so far
    cpu1, emu1 = cpu_seconds(child.pid), group_cpu(emulator_pid)
    published = int(re.search(r"messages written\D*([\d,]+)", output).group(1).replace(",", ""))
    at_end = [s for s in samples if "acked" in s and s["t"] <= t1]
    warm = [s for s in at_end if s["t"] >= t0 + 5]
    took = (warm[-1]["acked"] - warm[0]["acked"]) / (warm[-1]["t"] - warm[0]["t"]) if len(warm) > 1 else 0.0
    backlog = max(0, published - (at_end[-1]["acked"] if at_end else 0))
    rss = rss_mb(child.pid)
    stopped = time.time()
    os.kill(child.pid, signal.SIGINT)
    child.wait(timeout=600)
    reader.join(timeout=10)
    drain = time.time() - stopped
    latencies = _alert_latencies(subscriber, alerts)
    done = next((s for s in samples if s.get("done")), {})
    read = sum(r[0] for r in done.get("read", {}).values())
    return {
        "rate": rate,
        "offered": published / (t1 - t0),
        "took": took,
        "backlog": backlog,
        "read": read,
        "published": published,
        "cpu": 100 * (cpu1 - cpu0) / (t1 - t0),
        "rss": rss,
        "emulator_cpu": 100 * (emu1 - emu0) / (t1 - t0),
        "drain": drain,
        "latencies": latencies,
        "simulator_cpu": 100 * (sim1.ru_utime + sim1.ru_stime - sim0.ru_utime - sim0.ru_stime) / (t1 - t0),
    }


def _trace(simulator: subprocess.Popen, pid: int, samples: list[dict], t0: float, every: float) -> str:
    """Wait for the simulator; with ``every``, print the pipeline's taken rate, CPU and RSS over
    each interval meanwhile (for long runs: is it still keeping up, is memory flat?)."""
    if not every:
        return simulator.communicate()[0]
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(simulator.stdout), daemon=True)
    reader.start()
    print("  minute | taken ev/s | pipeline CPU % | pipeline RSS MB", flush=True)
    mark, acked, cpu = t0, _acked(samples), cpu_seconds(pid)
    while simulator.poll() is None:
        time.sleep(1)
        if time.time() < mark + every:
            continue
        now, now_acked, now_cpu = time.time(), _acked(samples), cpu_seconds(pid)
        print(
            f"  {(now - t0) / 60:6.1f} | {(now_acked - acked) / (now - mark):10.0f} | "
            f"{100 * (now_cpu - cpu) / (now - mark):14.0f} | {_rss_now(pid):15.0f}",
            flush=True,
        )
        mark, acked, cpu = now, now_acked, now_cpu
    reader.join(timeout=10)
    return "".join(chunks)


def _acked(samples: list[dict]) -> int:
    return next((s["acked"] for s in reversed(samples) if "acked" in s), 0)


def _rss_now(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _alert_latencies(subscriber, subscription: str) -> list[float]:
    from streamforge.timeutil import parse_timestamp

    latencies = []
    while True:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=5)
        if not response.received_messages:
            return latencies
        for received in response.received_messages:
            alert = json.loads(received.message.data)
            event_time = parse_timestamp(alert["event_time"]).timestamp()
            latencies.append(received.message.publish_time.timestamp() - event_time)
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument(
        "--trace-every",
        type=float,
        default=0,
        help="seconds; print taken rate, CPU and RSS over each such interval while publishing",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-live-bench-") as tmp:
        work = Path(tmp)
        emulator = start_pubsub_emulator(work / "emulator.log")
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.address
        try:
            rows = [
                one_rate(int(rate), args.seconds, emulator.process.pid, work, args.trace_every)
                for rate in args.rates.split(",")
            ]
        finally:
            emulator.stop()
    print(
        f"\nlocal streaming, `run all` (sessions, revenue, fraud) from the Pub/Sub emulator into DuckDB, "
        f"{args.seconds:.0f} s per rate"
    )
    header = (
        "offered ev/s",
        "taken ev/s",
        "backlog",
        "pipeline CPU %",
        "pipeline RSS MB",
        "emulator CPU %",
        "simulator CPU %",
        "drain s",
        "alerts",
        "alert p50 s",
        "alert p99 s",
    )
    print(" | ".join(header))
    for r in rows:
        lat = sorted(r["latencies"])
        p50 = f"{statistics.median(lat):.2f}" if lat else "-"
        p99 = f"{lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.2f}" if lat else "-"
        print(
            f"{r['offered']:12.0f} | {r['took']:10.0f} | {r['backlog']:7d} | {r['cpu']:14.0f} | {r['rss']:15.0f} | "
            f"{r['emulator_cpu']:14.0f} | {r['simulator_cpu']:15.0f} | {r['drain']:7.1f} | {len(lat):6d} | {p50:>11} | {p99:>11}"
        )
        if r["read"] != r["published"]:
            print(
                f"  at {r['rate']}/s the job read {r['read']:,} of {r['published']:,} published messages by the "
                "drain; the rest stayed in the subscription, unacknowledged"
            )


if __name__ == "__main__":
    main()
