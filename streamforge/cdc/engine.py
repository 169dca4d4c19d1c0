"""Run the Debezium PostgreSQL connector in-process (pydbzengine) and publish its changes.

The engine runs in a worker thread (``DebeziumEngine.run`` blocks inside the JVM, where no
Python signal handler can interrupt it); the calling thread waits for a stop request (Ctrl-C,
SIGTERM) and then closes the engine, which flushes the offsets of every delivered change to
the offsets file and returns. A change is delivered before the engine may commit it: the
handler returns only once the output has it (outputs.py), so a restart after a clean stop
resumes exactly, and after a crash re-delivers what was not yet committed (at-least-once).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from streamforge.cdc.config import DatabaseURL, DebeziumServerConfig
from streamforge.cdc.outputs import ChangeMessage, Output

__all__ = ["CdcStats", "EngineError", "run_engine"]


class EngineError(RuntimeError):
    """The engine could not start or stopped with an error; the message says why."""


@dataclass
class CdcStats:
    """What a run delivered; updated from the engine's thread."""

    batches: int = 0
    changes: int = 0
    tombstones: int = 0
    heartbeats: int = 0
    started: float = field(default_factory=time.monotonic)
    last_batch_at: float | None = None


def _handler(output: Output, stats: CdcStats, heartbeat_topic: str) -> Any:
    from pydbzengine import BasePythonChangeHandler

    class PublishChanges(BasePythonChangeHandler):
        """Called by the engine with each batch; returns when the output has delivered it."""

        def handleJsonBatch(self, records: list[Any]) -> None:  # noqa: N802 - the Java callback's name
            messages = []
            for record in records:
                key, value = record.key(), record.value()
                message = ChangeMessage(
                    str(record.destination()), None if key is None else str(key), None if value is None else str(value)
                )
                messages.append(message)
                if message.topic == heartbeat_topic:
                    stats.heartbeats += 1
                elif message.value is None:
                    stats.tombstones += 1
                else:
                    stats.changes += 1
            output.publish(messages)
            stats.batches += 1
            stats.last_batch_at = time.monotonic()

    return PublishChanges()


def _jvm_options(verbose: bool) -> list[str]:
    log_config = resources.files("streamforge.cdc").joinpath("log4j2.properties")
    # -Xrs: the JVM installs no SIGINT/SIGTERM handlers (it would exit at once); Python handles them.
    return [
        "-Xrs",
        "-Xms64m",
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={log_config}",
        f"-Dstreamforge.cdc.loglevel={'INFO' if verbose else 'WARN'}",
    ]


def run_engine(
    config: DebeziumServerConfig,
    database: DatabaseURL,
    output: Output,
    offsets_file: Path | None,
    should_stop: Callable[[], bool],
    *,
    state_dir: Path | None = None,
    on_progress: Callable[[CdcStats], None] | None = None,
    verbose: bool = False,
    poll_s: float = 0.2,
) -> CdcStats:
    """Capture changes until ``should_stop()`` (or an engine error); returns what was delivered.
    ``offsets_file`` None: the offsets where the properties file keeps them (the JDBC store)."""
    try:
        from pydbzengine import DebeziumJsonEngine
    except ImportError:
        raise EngineError("CDC needs pydbzengine: pip install 'streamforge[cdc]'") from None
    for folder in (offsets_file.parent if offsets_file is not None else None, state_dir):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    stats = CdcStats()
    engine = DebeziumJsonEngine(
        properties=config.embedded_properties(database, offsets_file, state_dir=state_dir),
        handler=_handler(output, stats, config.heartbeat_topic),
        jvm_opts=_jvm_options(verbose),
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            failure.append(exc)

    worker = threading.Thread(target=run, name="debezium-engine", daemon=True)
    try:
        worker.start()
        while worker.is_alive() and not should_stop():
            worker.join(poll_s)
            if on_progress is not None:
                on_progress(stats)
        asked = should_stop()
    finally:
        engine.close()  # flushes offsets; run() returns
        worker.join(60)
    if failure and not asked:
        raise EngineError(_describe(failure[0])) from failure[0]
    if worker.is_alive():
        raise EngineError("the Debezium engine did not stop within 60 s of being closed")
    if not asked:  # the engine reports a failure to start (bad settings, no database) by returning
        raise EngineError("the engine stopped on its own, without being asked to: its log above says why")
    return stats


def _describe(exc: BaseException) -> str:
    """The innermost cause of a Java exception chain, in one line."""
    message = str(exc)
    cause = getattr(exc, "getCause", None)
    while callable(cause) and cause() is not None:
        exc = cause()
        message = str(exc.getMessage() if hasattr(exc, "getMessage") else exc)
        cause = getattr(exc, "getCause", None)
    return message or type(exc).__name__
