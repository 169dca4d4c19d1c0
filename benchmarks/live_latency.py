"""Latencies and memory of the live system (`streamforge up`, CDC on) at a given rate, as a user sees them.

    python benchmarks/live_latency.py [--rate 500] [--seconds 60] [--no-cdc] [--gap 10s]
        [--watermark-lag 2s] [--case-every 1] [--early-panes 1m] [--trace-every 60] [--profile DIR]
        [--profile-memory DIR]

While the simulator publishes --rate events/s, a RAPID_ORDERS case (three orders by a new
user, 100 ms apart, stamped with the clock) is published every second (--case-every), and the warehouse is read
every 0.5 s from this process, as the dashboard reads it (its snapshot). Printed:

- event -> fraud alert at the webhook: the webhook sink's receipt time minus the event time of
  the order that completes the case (through the job, the alerts topic, the push
  subscription and the dispatcher); target p99 < 1 s at 500 events/s;
- minute end -> revenue row visible: when a minute's revenue_per_minute row is first seen,
  minus the minute's end;
- session gap end -> session row visible: when a session's final row (not an EARLY one) is
  first seen, minus its last event plus the gap (the session gap is cut to 10 s by default, so that sessions close during the
  run; `--gap 30m` keeps the shipped windows, for memory);
- in a run of more than ten minutes, the alert latency of each ten minutes;
- the analytics job's resident memory every --trace-every seconds, its peak, and its growth
  over the second half of the run (MB/min): flat memory means that slope is near zero.

--profile-memory DIR traces the analytics job's Python allocations (tracemalloc) and writes
where its memory is held to DIR every minute; tracing slows the job several times over, so its
latencies are not the system's (benchmarks/sampling_profiler).

--profile DIR samples the stacks of the jobs' threads every 5 ms (benchmarks/sampling_profiler)
and writes, per job, the share of time each function was on each thread's stack to DIR.

"Visible" includes the snapshot readers read, published every 2 s while the job writes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamforge.live.system import sink_records  # noqa: E402
from streamforge.schemas import get_schema  # noqa: E402
from streamforge.services import free_port  # noqa: E402
from streamforge.timeutil import format_timestamp, parse_duration, parse_timestamp  # noqa: E402
from streamforge.warehouse import open_for_reading  # noqa: E402

GAP_S = 10
PROFILER = Path(__file__).resolve().parent / "sampling_profiler"
ORDER = {
    "order_id": "",
    "user_id": "",
    "session_id": "S-latency",
    "status": "CREATED",
    "items": [{"product_id": "P-ELE-0001", "category": "electronics", "quantity": 1, "unit_price": 99.0}],
    "subtotal": 99.0,
    "discount": 0.0,
    "shipping": 0.0,
    "total_amount": 99.0,
    "currency": "USD",
    "payment_method": "card",
    "card_fingerprint": "fp_latency",
    "shipping_region": "eu-west",
    "ip_country": "GB",
    "is_first_order": False,
}


def percentiles(values: list[float]) -> str:
    if not values:
        return "- / - / - (0)"
    ordered = sorted(values)
    return (
        f"{statistics.median(ordered):.2f} / {ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]:.2f}"
        f" / {ordered[-1]:.2f} s ({len(ordered)})"
    )


def rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def print_memory(samples: list[tuple[float, float]]) -> None:
    """The trace, the peak, and the least-squares slope over the second half of the run."""
    if len(samples) < 2:
        return
    print("\n  analytics job RSS: " + ", ".join(f"{t / 60:.0f} min {mb:,.0f} MB" for t, mb in samples))
    half = [(t, mb) for t, mb in samples if t >= samples[-1][0] / 2]
    slope = 0.0
    if len(half) >= 2:
        mean_t, mean_mb = statistics.fmean(t for t, _ in half), statistics.fmean(mb for _, mb in half)
        spread = sum((t - mean_t) ** 2 for t, _ in half)
        slope = 60 * sum((t - mean_t) * (mb - mean_mb) for t, mb in half) / spread if spread else 0.0
    print(f"  peak {max(mb for _, mb in samples):,.0f} MB; growth over the second half {slope:+.1f} MB/min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--watermark-lag", default="2s")
    parser.add_argument("--case-every", type=float, default=1, help="seconds between injected RAPID_ORDERS cases")
    parser.add_argument("--gap", default=f"{GAP_S}s", help="the session gap (the shipped one is 30m)")
    parser.add_argument("--lateness", help="sessions' and revenue's allowed lateness (the shipped one is 10m)")
    parser.add_argument("--early-panes", help="sessions' EARLY pane period, 0s for none (the shipped one is 1m)")
    parser.add_argument("--no-cdc", action="store_true", help="without PostgreSQL and the CDC job")
    parser.add_argument("--trace-every", type=float, default=60, help="seconds between memory samples")
    parser.add_argument("--profile", type=Path, help="write the jobs' sampled stack profiles to this folder")
    parser.add_argument(
        "--profile-memory", type=Path, help="trace the analytics job's Python allocations into this folder"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the run's folder here (warehouse, published record, logs) and the injected orders as "
        "injected.jsonl, to check the drain against SQL afterwards",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout` or `kill`: drain and stop `up` as Ctrl-C does
    gap_s = parse_duration(args.gap).total_seconds()
    from google.cloud import pubsub_v1

    with tempfile.TemporaryDirectory(prefix="sf-live-latency-") as scratch:
        tmp = args.keep.resolve() if args.keep else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        work, config = tmp / "live", tmp / "latency.toml"
        injected = open(tmp / "injected.jsonl", "wb")
        lateness = f'allowed_lateness = "{args.lateness}"\n' if args.lateness else ""
        early = f'early_panes = "{args.early_panes}"\n' if args.early_panes else ""
        config.write_text(
            f'[sessions]\ngap = "{args.gap}"\n{early}{lateness}[revenue]\n{lateness}'
            f'[local_streaming]\nwatermark_lag = "{args.watermark_lag}"\n'
        )
        project = "latency-bench"
        env = dict(os.environ)
        for folder, variable in (
            (args.profile, "STREAMFORGE_PROFILE_DIR"),
            (args.profile_memory, "STREAMFORGE_MEMORY_PROFILE_DIR"),
        ):
            if folder:
                folder.mkdir(parents=True, exist_ok=True)
                env[variable] = str(folder.resolve())
        if args.profile or args.profile_memory:  # its sitecustomize starts the profilers in the jobs
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROFILER), env.get("PYTHONPATH")]))
        job_pid = 0
        up = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamforge",
                "--config",
                str(config),
                "up",
                *(["--no-cdc"] if args.no_cdc else []),
                "--rate",
                str(args.rate),
                "--workdir",
                str(work),
                "--project",
                project,
                "--port",
                str(free_port()),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "up.log", "wb"),
            start_new_session=True,
        )
        try:
            while (
                "dashboard"
                not in json.loads(
                    (work / "live.json").read_text() if (work / "live.json").exists() else '{"urls": {}}'
                )["urls"]
            ):
                if up.poll() is not None:
                    sys.exit(f"streamforge up exited: {(tmp / 'up.log').read_text()[-2000:]}")
                time.sleep(0.5)
            state = json.loads((work / "live.json").read_text())
            job_pid = state["services"]["analytics-job"]["pid"]
            memory: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
            os.environ["PUBSUB_EMULATOR_HOST"] = state["services"]["pubsub-emulator"]["address"]
            publisher, schema = pubsub_v1.PublisherClient(), get_schema("order_event")
            cases: dict[str, float] = {}  # user -> event time of the order completing the case
            minutes: dict[str, float] = {}  # window_end -> first seen
            sessions: dict[str, float] = {}  # session_id -> first seen minus gap end
            started, next_case, next_sample, n = time.time(), 0.0, 0.0, 0
            while time.time() - started < args.seconds:
                now = time.time()
                if now >= next_sample:
                    memory.append((now - started, rss_mb(job_pid)))
                    with open(tmp / "memory.tsv", "a") as trace:  # seconds, RSS MB: readable during the run
                        trace.write(f"{memory[-1][0]:.0f}\t{memory[-1][1]:.0f}\n")
                    next_sample = now + args.trace_every
                if now >= next_case:
                    user, at = f"U-latency-{n}", datetime.now(timezone.utc)
                    for i in range(3):
                        order = schema.validate(
                            {
                                **ORDER,
                                "event_id": f"lat-{n}-{i}",
                                "order_id": f"LAT{n}-{i}",
                                "user_id": user,
                                "event_time": at + timedelta(milliseconds=100 * i),
                            }
                        )
                        line = schema.to_json(order)
                        injected.write(line + b"\n")
                        publisher.publish(
                            f"projects/{project}/topics/orders",
                            line,
                            event_id=order["event_id"],
                            event_time=format_timestamp(order["event_time"]),
                            encoding="json",
                        )
                    cases[user] = (at + timedelta(milliseconds=200)).timestamp()
                    next_case, n = now + args.case_every, n + 1
                _read_warehouse(work / "warehouse.duckdb", minutes, sessions, started, gap_s)
                time.sleep(0.5)
            memory.append((time.time() - started, rss_mb(job_pid)))
        finally:
            injected.close()
            up.send_signal(signal.SIGINT)
            drain_started, drain_peak = time.time(), 0.0
            while up.poll() is None and time.time() - drain_started < 900:
                drain_peak = max(drain_peak, rss_mb(job_pid) if job_pid else 0.0)
                time.sleep(0.5)
            up.wait(timeout=1)
            drain_s = time.time() - drain_started
        alert_latency, in_job, delivery = [], [], []
        by_block: dict[int, list[float]] = {}  # ten-minute block of the run -> its alert latencies
        for record in sink_records(work / "logs" / "webhook-sink.log"):
            body = record.get("body", {})
            if record.get("verdict") == "alert" and body.get("user_id") in cases:
                received, detected = _seconds(record["received_at"]), _seconds(body["detected_at"])
                alert_latency.append(received - cases[body["user_id"]])
                in_job.append(detected - cases[body["user_id"]])
                delivery.append(received - detected)
                by_block.setdefault(int((cases[body["user_id"]] - started) // 600), []).append(alert_latency[-1])
        minute_latency = [seen - _seconds(end) for end, seen in minutes.items()]
        print(
            f"\nlive latencies, `streamforge up{' --no-cdc' if args.no_cdc else ''}` at {args.rate:,.0f} events/s "
            f"for {args.seconds:.0f} s, session gap {args.gap}, watermark lag {args.watermark_lag} (p50 / p99 / max, count)"
        )
        print(
            f"  event -> fraud alert at the webhook   {percentiles(alert_latency)}  [{len(alert_latency)} of {len(cases)} cases]"
        )
        print(f"    of which event -> alert detected    {percentiles(in_job)}")
        print(f"    and detected -> webhook receipt      {percentiles(delivery)}")
        if len(by_block) > 1:  # a long run: does the tail grow as sessions start to close?
            for block, values in sorted(by_block.items()):
                print(f"    minutes {10 * block:>3}-{10 * block + 10:<3}                   {percentiles(values)}")
        print(f"  minute end -> revenue row visible      {percentiles(minute_latency)}")
        print(f"  session gap end -> session row visible {percentiles(list(sessions.values()))}")
        print_memory(memory)
        print(f"  the drain: {drain_s:.0f} s, analytics job peak {drain_peak:,.0f} MB")


def _seconds(value: str | float) -> float:
    return value if isinstance(value, float) else parse_timestamp(value).timestamp()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _read_warehouse(
    path: Path, minutes: dict[str, float], sessions: dict[str, float], since: float, gap_s: float
) -> None:
    """Note when each minute and session (that ended after ``since``) is first visible."""
    try:
        with open_for_reading(path) as reading:
            con, now = reading.connection, time.time()
            for (end,) in con.execute(
                "SELECT strftime(window_end, '%Y-%m-%dT%H:%M:%SZ') FROM revenue_per_minute "
                "WHERE epoch_ms(window_end) > ?",
                [since * 1000],
            ).fetchall():
                minutes.setdefault(end, now)
            # final rows only (an EARLY row is a session still open), of the last ten minutes'
            # gap ends: a run of hours reads a few thousand rows, not every session so far
            recent_ms = max(since, now - 600) * 1000
            for session_id, end in con.execute(
                "SELECT session_id, epoch_ms(session_end) FROM user_sessions "
                "WHERE pane_timing <> 'EARLY' AND epoch_ms(session_end) + ? > ?",
                [gap_s * 1000, recent_ms],
            ).fetchall():
                sessions.setdefault(session_id, now - (end / 1000 + gap_s))
    except Exception as exc:  # noqa: BLE001 - nothing written yet
        if "does not exist" not in str(exc) and "being written" not in str(exc):
            print(f"  (reading the warehouse: {exc})", file=sys.stderr)


if __name__ == "__main__":
    main()
