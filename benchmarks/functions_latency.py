"""Cloud Functions: alert dispatch latency and ingest throughput, functions-framework on 127.0.0.1.

    python benchmarks/functions_latency.py [--alerts 1000] [--events 100000] [--clients 4]

Prints a table:

1. dispatch latency: ``--alerts`` Pub/Sub CloudEvents, one after another, each a different
   alert, POSTed to the alert dispatcher (``streamforge functions serve alert_dispatcher``, a
   process) with one signed JSON webhook: ``streamforge webhook-sink``, another process, which
   verifies the signature and notes the receipt time. Latency = receipt time - the moment the
   benchmark started the POST (one clock: the same machine). Once with the memory ledger and
   once with the Firestore ledger on the Firestore emulator (one read and one write per alert).
2. ingest throughput: ``--events`` simulated clickstream and order events in batches of 500,
   POSTed by ``--clients`` threads to the ingest function (a process), publishing to the Pub/Sub
   emulator and to the file output. Events/s = events accepted / wall time.

Targets (issue 5): dispatch p50 < 10 ms, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from measure import percentile, print_table  # noqa: E402

from streamforge.functions.dispatcher import PUBSUB_MESSAGE_PUBLISHED  # noqa: E402
from streamforge.services import (  # noqa: E402
    LOOPBACK,
    LocalService,
    ServerUnavailable,
    free_port,
    start_firestore_emulator,
    start_pubsub_emulator,
    start_service,
    stop_process,
    wait_for_port,
)

#: The console script next to this interpreter: the functions run as `streamforge functions serve`.
STREAMFORGE = Path(sys.executable).parent / "streamforge"
#: This benchmark's own signing secret and API key (made up for the run, not any deployment's).
SECRET = f"bench-signing-secret-{uuid.uuid4().hex}"
API_KEY = f"bench-api-key-{uuid.uuid4().hex}"
ALERT = {
    "user_id": "U00000001",
    "order_id": "O0001",
    "alert_type": "RAPID_ORDERS",
    "risk_score": 0.85,
    "description": "3 orders in 2m",
    "detected_at": "2026-11-01T08:06:00.000Z",
    "event_time": "2026-11-01T08:05:00.000Z",
    "related_event_ids": ["e1", "e2", "e3"],
}
BATCH = 500


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without a user's STREAMFORGE_CONFIG, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k != "STREAMFORGE_CONFIG"}, **extra}


@contextmanager
def _function(name: str, work: Path, env: dict[str, str]) -> Iterator[str]:
    """``streamforge functions serve NAME`` as a process on 127.0.0.1; yields its URL."""
    port = free_port()
    service = start_service(
        name,
        [str(STREAMFORGE), "functions", "serve", name, "--port", str(port)],
        work / f"{name}-{port}.log",
        port=port,
        env=_environment(**env),
    )
    try:
        yield f"http://{LOOPBACK}:{port}/"
    finally:
        service.stop()


@contextmanager
def _emulator(start: Callable[[Path], LocalService], work: Path) -> Iterator[str]:
    service = start(work / f"emulator-{uuid.uuid4().hex[:8]}.log")
    try:
        yield service.address
    finally:
        service.stop()


def _cloud_event(alert: dict, message_id: str) -> tuple[dict[str, str], bytes]:
    """The HTTP request Eventarc sends for one Pub/Sub message, as a binary-mode CloudEvent
    (``ce-*`` headers, the Pub/Sub envelope as the JSON body)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": PUBSUB_MESSAGE_PUBLISHED,
        "ce-id": message_id,
        "ce-source": "//pubsub.googleapis.com/projects/bench/topics/fraud-alerts",
        "Content-Type": "application/json",
    }
    message = {
        "data": base64.b64encode(json.dumps(alert).encode()).decode(),
        "messageId": message_id,
        "attributes": {"schema": "fraud_alert"},
    }
    return headers, json.dumps({"message": message, "subscription": "projects/bench/subscriptions/alerts"}).encode()


def _sink(work: Path) -> tuple[subprocess.Popen, str, dict[str, float], threading.Event]:
    """A webhook-sink process; its receipt time per alert_id fills ``receipts``."""
    port = free_port()
    log = work / f"sink-{port}.log"
    with open(log, "wb") as err:
        process = subprocess.Popen(
            [str(STREAMFORGE), "webhook-sink", "--port", str(port), "--jsonl"],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            env=_environment(STREAMFORGE_WEBHOOK_SECRET=SECRET),
            start_new_session=True,
        )
    wait_for_port(port, process, log)
    receipts: dict[str, float] = {}
    bad = threading.Event()

    def read() -> None:
        for line in process.stdout:
            record = json.loads(line)
            if record["verdict"] == "alert":
                receipts[record["idempotency_key"]] = record["received_at"]
            else:
                bad.set()

    threading.Thread(target=read, daemon=True).start()
    return process, f"http://{LOOPBACK}:{port}/alerts", receipts, bad


def dispatch_latency(work: Path, alerts: int, ledger: str, extra_env: dict[str, str]) -> list[tuple[str, str]]:
    sink, url, receipts, bad = _sink(work)
    try:
        webhooks = [{"name": "sink", "url": url, "secret_env": "BENCH_WEBHOOK_SECRET"}]
        env = {
            "STREAMFORGE_WEBHOOKS": json.dumps(webhooks),
            "BENCH_WEBHOOK_SECRET": SECRET,
            "STREAMFORGE_ALERT_LEDGER": ledger,
            **extra_env,
        }
        with _function("alert_dispatcher", work, env) as function_url:
            session = requests.Session()
            sent: dict[str, float] = {}
            answers: list[float] = []
            for n in range(-20, alerts):  # 20 to warm up connections and the ledger
                alert_id = f"bench-{uuid.uuid4().hex[:12]}"
                headers, body = _cloud_event({**ALERT, "alert_id": alert_id}, alert_id)
                started = time.time()
                response = session.post(function_url, headers=headers, data=body, timeout=30)
                if response.status_code != 200:
                    raise SystemExit(f"the dispatcher answered {response.status_code}: {response.text[:300]}")
                if n >= 0:
                    sent[alert_id] = started
                    answers.append((time.time() - started) * 1000)
            deadline = time.monotonic() + 10
            while len([a for a in sent if a in receipts]) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        stop_process(sink)
    if bad.is_set():
        raise SystemExit("the sink refused a request (bad signature or body)")
    missing = [a for a in sent if a not in receipts]
    if missing:
        raise SystemExit(f"{len(missing)} alerts never reached the sink")
    latencies = [(receipts[a] - t) * 1000 for a, t in sent.items()]
    name = f"dispatch, {ledger.split(':')[0]} ledger, {alerts:,} alerts"
    return [
        (
            f"{name}: request -> webhook receipt p50 / p99 / max",
            f"{statistics.median(latencies):.1f} / {percentile(latencies, 99):.1f} / {max(latencies):.1f} ms",
        ),
        (
            f"{name}: request -> function answered p50 / p99",
            f"{statistics.median(answers):.1f} / {percentile(answers, 99):.1f} ms",
        ),
    ]


def _batches(work: Path, events: int) -> list[bytes]:
    """``events`` simulated events as ingest request bodies of ``BATCH`` events each."""
    run = work / "sim"
    hours = max(1, events // 35_000 + 1)
    start = datetime.now(timezone.utc) - timedelta(hours=hours)  # recent: ingest refuses events over 7 days old
    subprocess.run(
        [
            str(STREAMFORGE),
            "simulate",
            "--output",
            f"file://{run}",
            "--quiet",
            "--duration",
            f"{hours}h",
            "--start",
            start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ],
        check=True,
        env=_environment(),
    )
    clicks = (run / "clickstream.jsonl").read_text().splitlines()
    orders = (run / "orders.jsonl").read_text().splitlines()
    lines = [("clickstream", line) for line in clicks] + [("orders", line) for line in orders]
    lines = lines[:events]
    if len(lines) < events:
        raise SystemExit(f"the simulation gave {len(lines)} events, fewer than {events}")
    bodies = []
    for start in range(0, events, BATCH):
        batch: dict[str, list] = {"clickstream": [], "orders": []}
        for stream, line in lines[start : start + BATCH]:
            batch[stream].append(json.loads(line))
        bodies.append(json.dumps({k: v for k, v in batch.items() if v}).encode())
    return bodies


def ingest_throughput(
    work: Path, bodies: list[bytes], clients: int, label: str, env: dict[str, str]
) -> tuple[str, str]:
    """Events/s the function takes: its per-key rate limit raised out of the way (it is a
    token bucket that costs about a microsecond a request, not what is measured here)."""
    unlimited = work / "unlimited.toml"
    unlimited.write_text("[ingest]\nserver_events_per_second = 1e9\n", encoding="utf-8")
    env = {"STREAMFORGE_INGEST_API_KEYS": f"server:{API_KEY}", "STREAMFORGE_CONFIG": str(unlimited), **env}
    with _function("ingest", work, env) as function_url:
        local = threading.local()

        def post(body: bytes) -> int:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            response = local.session.post(
                function_url, data=body, timeout=60, headers={"Content-Type": "application/json", "X-API-Key": API_KEY}
            )
            if response.status_code != 200:
                raise SystemExit(f"ingest answered {response.status_code}: {response.text[:300]}")
            return response.json()["accepted"]

        post(bodies[0])  # warm up (topics, connections)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            accepted = sum(pool.map(post, bodies))
        wall = time.perf_counter() - started
    return (
        f"ingest -> {label}, {accepted:,} events in batches of {BATCH}, {clients} clients",
        f"{accepted / wall:,.0f} events/s ({len(bodies) / wall:,.0f} requests/s)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="sf-fn-bench-") as tmp:
        work = Path(tmp)
        rows += dispatch_latency(work, args.alerts, "memory", {})
        try:
            with _emulator(start_firestore_emulator, work) as firestore:
                rows += dispatch_latency(
                    work,
                    args.alerts,
                    f"firestore://bench_{uuid.uuid4().hex[:8]}",
                    {"FIRESTORE_EMULATOR_HOST": firestore, "GOOGLE_CLOUD_PROJECT": "bench"},
                )
        except ServerUnavailable as exc:
            rows.append(("dispatch, firestore ledger", f"not measured: {exc}"))
        bodies = _batches(work, args.events)
        try:
            with _emulator(start_pubsub_emulator, work) as emulator:
                rows.append(
                    ingest_throughput(
                        work,
                        bodies,
                        args.clients,
                        "Pub/Sub emulator",
                        {
                            "STREAMFORGE_INGEST_OUTPUT": f"pubsub://bench-{uuid.uuid4().hex[:8]}",
                            "PUBSUB_EMULATOR_HOST": emulator,
                        },
                    )
                )
        except ServerUnavailable as exc:
            rows.append(("ingest -> Pub/Sub emulator", f"not measured: {exc}"))
        rows.append(
            ingest_throughput(
                work, bodies, args.clients, "file output", {"STREAMFORGE_INGEST_OUTPUT": f"file://{work / 'ingested'}"}
            )
        )
    print_table(rows)


if __name__ == "__main__":
    main()
