"""How the local Spark driver's JVM starts, and the class-data archive it starts from.

A fresh JVM spends much of a short job's CPU loading classes and compiling them
(docs/platform-notes.md, "JIT compilation"). For local runs only (Dataproc starts its own
JVMs), the driver gets:

- the parallel garbage collector: throughput over pause times, about 10% faster here;
- the compiler directives in ``jit_directives.json``: code that is hot only while a query
  is planned, compiled or shipped (Janino, Catalyst, serialization) is compiled by C1 alone,
  which leaves C2 to the code that processes rows;
- a class-data sharing archive (AppCDS) of the classes a training run of the job loaded:
  later JVMs map them instead of reading, parsing and verifying them from the jars again.
  ``streamforge batch class-archive`` records it, once per installation (``make`` does);
  without one, Spark starts as usual.

The JVM's own messages go to stderr, so that a command's stdout stays its output.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

__all__ = ["DIRECTIVES", "ArchiveError", "archive_path", "java_options", "record_archive"]

DIRECTIVES = Path(__file__).with_name("jit_directives.json")
#: The days the training run simulates (across a midnight, so that it covers two dates).
_TRAINING_START, _TRAINING_DAYS = "2026-11-01T22:00:00Z", [date(2026, 11, 1), date(2026, 11, 2)]


class ArchiveError(RuntimeError):
    """The class-data archive could not be recorded (the message says why)."""


def _java() -> Path | None:
    """The java that Spark's launcher starts: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def archive_path() -> Path | None:
    """Where this installation's archive lives: beside the installed PySpark (an archive is only
    valid for the jars and the JVM that recorded it), named after both. None without a java."""
    import pyspark

    java = _java()
    if java is None:
        return None
    stat = java.stat()
    identity = hashlib.sha256(f"{java}:{stat.st_size}:{stat.st_mtime_ns}:{pyspark.__file__}".encode()).hexdigest()
    return Path(sys.prefix) / "share" / "streamforge" / f"spark-{pyspark.__version__}-{identity[:12]}.jsa"


def java_options(record_to: Path | None = None) -> str:
    """spark.driver.extraJavaOptions for a local session; ``record_to``: write an archive of the
    classes this JVM loads there when it exits (the training run), instead of using one."""
    options = [
        "-XX:+UseParallelGC",
        "-XX:+UnlockDiagnosticVMOptions",
        "-XX:+DisplayVMOutputToStderr",
        "-Xlog:disable",
        "-Xlog:all=warning:stderr",
    ]
    if DIRECTIVES.is_file():  # not when the package runs from the Dataproc zip (on the path, not on disk)
        options.append(f"-XX:CompilerDirectivesFile={DIRECTIVES}")
    if record_to is not None:
        options.append(f"-XX:ArchiveClassesAtExit={record_to}")
    else:
        archive = archive_path()
        if archive is not None and archive.is_file():
            options.append(f"-XX:SharedArchiveFile={archive}")
    return " ".join(shlex.quote(option) for option in options)


def record_archive(force: bool = False) -> tuple[Path, float]:
    """Records this installation's archive unless it exists (or ``force``): a training run of the
    daily job in a separate process. Returns the archive and the seconds it took (0 if kept)."""
    target = archive_path()
    if target is None:
        raise ArchiveError("no java: set JAVA_HOME or put java on PATH (Spark needs Java 17 or 21)")
    if target.is_file() and not force:
        return target, 0.0
    started = time.perf_counter()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArchiveError(f"cannot create {target.parent}: {exc.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="sf-class-archive-") as scratch:
        recording = Path(scratch) / target.name
        training = subprocess.run(
            [sys.executable, "-m", "batch.local_jvm", str(recording), scratch],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if training.returncode != 0 or not recording.is_file():
            raise ArchiveError(
                f"the training run exited {training.returncode} without an archive:\n"
                + "\n".join(line for line in training.stderr.splitlines() if "[cds" not in line)[-3000:]
            )
        os.replace(recording, target)  # complete or absent: never a half-written archive
    for stale in target.parent.glob("spark-*.jsa"):  # recorded for another PySpark or JVM
        if stale != target:
            stale.unlink(missing_ok=True)
    return target, time.perf_counter() - started


def _train(recording: Path, scratch: Path) -> None:
    """The training run: the daily job over a simulated night (1% malformed messages, 1%
    duplicates) read as JSON lines, then as Parquet tables; the JVM writes the archive when it
    exits, which happens when its standard input (the gateway's pipe) closes."""
    from batch.daily_metrics import run
    from batch.schemas import STREAMS, typed_schema
    from batch.spark import local_session
    from streamforge.transport import STREAM_FILES

    events = scratch / "events"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "streamforge",
            "simulate",
            "--output",
            f"file://{events}",
            "--quiet",
            "--start",
            _TRAINING_START,
            "--duration",
            "4h",
            "--sessions-per-second",
            "0.5",
            "--malformed",
            "0.01",
            "--duplicates",
            "0.01",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    spark = local_session(app="streamforge-class-archive", java_options=java_options(record_to=recording))
    run(spark, _TRAINING_DAYS, f"file://{events}", f"file://{scratch / 'from-json'}")
    tables = scratch / "tables"
    for stream, (_, table) in STREAMS.items():
        (
            spark.read.schema(typed_schema(stream))
            .json(str(events / STREAM_FILES[stream]))
            .write.parquet(str(tables / table))
        )
    run(spark, _TRAINING_DAYS, f"parquet://{tables}", f"file://{scratch / 'from-parquet'}")
    gateway = spark.sparkContext._gateway
    jvm = gateway.proc  # PySpark's handle on the JVM process it launched
    spark.stop()
    gateway.shutdown()
    jvm.stdin.close()
    if jvm.wait() != 0:
        raise SystemExit(f"the JVM exited {jvm.returncode}")


if __name__ == "__main__":
    _train(Path(sys.argv[1]), Path(sys.argv[2]))
