"""The local driver's JVM options: directives HotSpot accepts, and an archive the JVM maps."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from batch import local_jvm
from batch.local_jvm import DIRECTIVES, ArchiveError, archive_path, java_options, record_archive

#: A local session with the given JVM options (the test adds a class-loading log) and one query.
_PROBE = """
import sys
from batch.spark import local_session
spark = local_session(app="jvm-probe", cores="1", java_options=sys.argv[1])
spark.range(10).selectExpr("sum(id)").collect()
"""


def _java() -> str:
    java = local_jvm._java()
    assert java is not None, "the batch tests need a java (JAVA_HOME or PATH)"
    return str(java)


def test_hotspot_accepts_the_directives_file() -> None:
    # A pattern HotSpot refuses (such as an embedded *) makes it drop the file, or fail to start.
    result = subprocess.run(
        [
            _java(),
            "-XX:+UnlockDiagnosticVMOptions",
            "-XX:+DisplayVMOutputToStderr",
            f"-XX:CompilerDirectivesFile={DIRECTIVES}",
            "-version",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "3 compiler directives added" in result.stderr, result.stderr


def test_the_options_name_the_archive_only_when_there_is_one(tmp_path, monkeypatch) -> None:
    archive = tmp_path / "spark.jsa"
    monkeypatch.setattr(local_jvm, "archive_path", lambda: archive)
    assert "SharedArchiveFile" not in java_options()
    archive.write_bytes(b"x")
    assert f"-XX:SharedArchiveFile={archive}" in shlex.split(java_options())
    recording = shlex.split(java_options(record_to=tmp_path / "new.jsa"))
    assert f"-XX:ArchiveClassesAtExit={tmp_path / 'new.jsa'}" in recording
    assert not any("SharedArchiveFile" in option for option in recording)
    # An existing archive is kept: nothing runs.
    assert record_archive() == (archive, 0.0)


def test_without_a_java_there_is_no_archive_and_the_reason_is_given(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    assert archive_path() is None
    assert "SharedArchiveFile" not in java_options()
    with pytest.raises(ArchiveError, match="no java: set JAVA_HOME"):
        record_archive()


def test_a_local_session_maps_the_installations_archive(tmp_path) -> None:
    archive = archive_path()
    if archive is None or not archive.is_file():
        pytest.skip(
            "no class-data archive in this installation: `make test` records it first (streamforge batch class-archive)"
        )
    log = tmp_path / "classes.log"
    options = java_options() + f" -Xlog:class+load=info:file={log}"
    subprocess.run(
        [sys.executable, "-c", _PROBE, options],
        check=True,
        capture_output=True,
        timeout=180,
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.DEVNULL,
    )
    lines = log.read_text().splitlines()
    archived = sum("source: shared objects file (top)" in line for line in lines)
    from_jars = sum(".jar" in line.partition(" source: ")[2] for line in lines)
    # Generated classes and lambdas are defined at run time either way; of the classes in jars,
    # a JVM that maps the archive takes nearly all from it (a query the training run did not
    # make loads a few more), one that cannot (another JVM, other jars) takes none.
    assert archived > 0.9 * (archived + from_jars), f"{archived} classes from the archive, {from_jars} from jars"
