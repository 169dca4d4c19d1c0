"""``streamforge functions serve|package`` and ``streamforge webhook-sink``: the Cloud Functions locally."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import orjson
import typer

from streamforge.config import ConfigError, load_config
from streamforge.functions.packaging import FUNCTIONS, deploy_command, function_source
from streamforge.functions.packaging import package as build
from streamforge.functions.webhook_sink import SECRET_ENV, Received, WebhookSink
from streamforge.packaging import PackagingError, build_wheel
from streamforge.shutdown import stop_on_signals

__all__ = ["app", "webhook_sink"]

app = typer.Typer(
    help="The Cloud Functions (alert_dispatcher, ingest): serve one locally, or package them for deployment.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("serve")
def serve(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="alert_dispatcher|ingest", help="The function to run."),
    port: int = typer.Option(8080, "--port", "-p", help="Port on 127.0.0.1."),
    functions_dir: Optional[Path] = typer.Option(
        None, metavar="DIR", help="Where the function folders are [default: functions/ of the checkout]."
    ),
    push: bool = typer.Option(
        False,
        "--push",
        help="Serve the entry point for a Pub/Sub push subscription (HTTP), as "
        "the deployment does for the alert dispatcher.",
    ),
) -> None:
    """Run a function with functions-framework on 127.0.0.1, configured from the environment
    as on Cloud Functions (docs/functions.md lists the variables). Ctrl-C stops it."""
    try:
        folder = function_source(name, functions_dir)
    except PackagingError as exc:
        raise _fail(str(exc)) from None
    spec = FUNCTIONS[name]
    if push and spec.push_target is None:
        raise _fail(f"{name} has no push entry point")
    target, signature = (spec.push_target, "http") if push else (spec.target, spec.signature_type)
    config_path = ctx.find_root().params.get("config")
    if config_path is not None:  # the function reads the same file
        os.environ["STREAMFORGE_CONFIG"] = str(Path(config_path).resolve())
    command = [
        sys.executable,
        "-m",
        "functions_framework",
        "--target",
        target,
        "--source",
        str(folder / "main.py"),
        "--signature-type",
        signature,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    typer.echo(f"serving {name} ({target}, {signature}) on http://127.0.0.1:{port}/ (Ctrl-C to stop)", err=True)
    sys.stderr.flush()
    os.execv(sys.executable, command)


@app.command("package")
def package(
    ctx: typer.Context,
    names: Optional[List[str]] = typer.Argument(
        None, metavar="[alert_dispatcher|ingest]...", help="Functions to package [default: all]."
    ),
    output: Path = typer.Option(
        Path("dist/functions"), "--output", "-o", metavar="DIR", help="Where the folders and zips go."
    ),
    functions_dir: Optional[Path] = typer.Option(
        None, metavar="DIR", help="Where the function folders are [default: functions/ of the checkout]."
    ),
) -> None:
    """Build each function's deployable folder (main.py, requirements.txt, the streamforge
    wheel) and its zip, ready for `gcloud functions deploy --source DIR/NAME` or an upload."""
    try:
        config = load_config(ctx.find_root().params.get("config"))  # the topic names in the deploy lines
        with tempfile.TemporaryDirectory(prefix="sf-wheel-") as tmp:
            wheel = build_wheel(Path(tmp))
            for name in names or list(FUNCTIONS):
                archive = build(name, output, wheel, functions_dir)
                typer.echo(f"{archive}  ({archive.stat().st_size:,} bytes)")
                typer.echo(f"  deploy: {deploy_command(name, output / name, config)}")
    except (ConfigError, PackagingError) as exc:
        raise _fail(str(exc), 1) from None


def webhook_sink(
    port: int = typer.Option(8099, "--port", "-p", help="Port on 127.0.0.1."),
    secret_env: str = typer.Option(
        SECRET_ENV, metavar="VAR", help="Environment variable holding the signing secret (several: comma-separated)."
    ),
    jsonl: bool = typer.Option(
        False, "--jsonl", help="Print each request as a JSON line (with received_at) instead of text."
    ),
    tolerance: float = typer.Option(300.0, metavar="SECONDS", help="Oldest signed timestamp accepted."),
) -> None:
    """A local webhook receiver: verifies each alert's signature, drops repeats of an
    Idempotency-Key, prints what arrives (Slack-format messages on /slack). Ctrl-C stops it."""
    secrets = [s.strip() for s in os.environ.get(secret_env, "").split(",") if s.strip()]
    if not secrets:
        raise _fail(f"${secret_env} is not set: export the webhooks' signing secret first")

    def show(received: Received) -> None:
        if jsonl:
            line = orjson.dumps(
                {
                    "verdict": received.verdict,
                    "path": received.path,
                    "received_at": received.received_at,
                    "idempotency_key": received.idempotency_key,
                    "reason": received.reason,
                    "body": received.body,
                }
            ).decode()
        elif received.verdict == "alert":
            a = received.body
            line = (
                f"ALERT {a.get('alert_type')} risk {a.get('risk_score')} user {a.get('user_id')} "
                f"order {a.get('order_id')}: {a.get('description')} [{a.get('alert_id')}, signature ok]"
            )
        elif received.verdict == "slack":
            line = f"SLACK {received.body.get('text') if isinstance(received.body, dict) else received.body}"
        else:
            line = f"{received.verdict.upper()} {received.idempotency_key or '-'}: {received.reason or 'seen before'}"
        print(line, flush=True)

    try:
        sink = WebhookSink(secrets, port=port, tolerance=tolerance, on_request=show)
    except OSError as exc:
        raise _fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    typer.echo(f"webhook sink on {sink.url}/ (Slack messages on {sink.url}/slack); Ctrl-C to stop", err=True)
    with stop_on_signals() as stop:
        sink.start()
        while not stop():
            time.sleep(0.2)
    sink.stop()
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sink.counts.items())
    typer.echo(f"webhook sink stopped: {counts}", err=True)
