"""Every third-party module the code imports is declared, pinned, in the extra whose users load it.

Three checks, beside deptry (which ``make test`` runs first: every top-level import declared,
none only arriving through another package, nothing declared unused):
- the namespace packages deptry cannot tell apart (``google.*`` is shared by some thirty
  distributions, so deptry sees one name for all of them) resolve to declared distributions;
- every pin is the version this suite runs with;
- each extra, installed alone into a clean virtual environment the way a user installs it,
  loads what that extra's users load: ``streamforge --help`` lists every command of the
  extra as installed and every other one as not installed (and running one says which extra
  to install), and the extra's deployables start: the Dataflow launcher builds a job, each
  function folder's ``requirements.txt`` serves its function, the batch job file parses its
  options.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from streamforge.cli import COMMANDS
from streamforge.functions.packaging import FUNCTIONS, package
from streamforge.packaging import build_wheel
from tests.support.cli import run_entry_point
from tests.support.dataflow import ALERTS, BUCKET, WAREHOUSE, dataflow_args
from tests.support.environments import CORE, ROOT, CleanEnvironment, closure, declared_extras
from tests.support.functions import API_KEY, dispatcher_env, json_webhook, packaged_environment, running_function

#: Where the product's code lives (what users run), and the tests' and benchmarks' (dev only).
PRODUCT = ("streamforge", "beam_pipelines", "batch", "infra", "functions", "dataflow")
DEVELOPMENT = ("tests", "benchmarks")
USER_EXTRAS = [CORE, *(name for name in declared_extras() if name != "dev")]


def _declared(extras: list[str]) -> set[str]:
    """Canonical names declared by the core and ``extras`` (streamforge[...] followed)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for extra in set().union(*(closure(e) for e in extras)):
        found |= {canonicalize_name(r.name) for r in declared_extras()[extra] if r.name != "streamforge"}
    return found


def _imports(folder: str) -> list[tuple[Path, int, str]]:
    """(file, line, dotted name) of every absolute import below ``folder``; for ``from A import
    B`` the name is A.B (B may be a module)."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found += [(path, node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _file_owners() -> dict[Path, str]:
    owners = {}
    for dist in metadata.distributions():
        for file in dist.files or ():
            if file.suffix == ".py":
                owners[Path(dist.locate_file(file)).resolve()] = canonicalize_name(dist.metadata["Name"])
    return owners


def _providing(name: str, owners: dict[Path, str]) -> str | None:
    """The distribution whose files hold the module ``name`` (or the nearest module above it)."""
    parts = name.split(".")
    for end in range(len(parts), 1, -1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin not in ("namespace", "built-in"):
            return owners.get(Path(spec.origin).resolve())
    return None


def test_namespace_packages_resolve_to_declared_distributions() -> None:
    namespaces = {top for top, dists in metadata.packages_distributions().items() if len(set(dists)) > 1}
    owners = _file_owners()
    product, everything = _declared(USER_EXTRAS), _declared(["dev"])
    undeclared = []
    for folders, declared in ((PRODUCT, product), (DEVELOPMENT, everything)):
        for folder in folders:
            for path, line, name in _imports(folder):
                if name.split(".")[0] not in namespaces:
                    continue
                dist = _providing(name, owners)
                assert dist is not None, f"{path}:{line}: {name} is not installed"
                if dist not in declared:
                    undeclared.append(f"{path.relative_to(ROOT)}:{line}: {name} comes from {dist}")
    assert undeclared == [], "imported but not declared in pyproject.toml:\n" + "\n".join(undeclared)


def test_every_pin_is_the_version_the_suite_runs_with() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    wrong = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.name == "streamforge":
            assert not requirement.specifier, line  # an extra of this project, not a package
            continue
        (spec,) = requirement.specifier  # exactly one, ==
        assert spec.operator == "==", line
        if metadata.version(requirement.name) != spec.version:
            wrong.append(f"{line}: {metadata.version(requirement.name)} installed")
    assert wrong == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _listed(help_text: str) -> dict[str, str]:
    """Command -> its one-line help, from the Commands section of ``streamforge --help``."""
    section = help_text.split("\nCommands:\n", 1)[1]
    return dict(re.findall(r"^  (\S+) +(.*)$", section, re.MULTILINE))


@pytest.mark.slow
@pytest.mark.parametrize("extra", USER_EXTRAS)
def test_an_extra_installed_alone_loads_what_its_users_load(extra: str, wheel: Path, tmp_path: Path) -> None:
    environment = CleanEnvironment.create(tmp_path)
    environment.install(f"{wheel}[{extra}]" if extra != CORE else str(wheel))
    installed = closure(extra)

    streamforge = environment.bin("streamforge")
    listing = environment.run(streamforge, "--help")
    assert listing.returncode == 0, listing.stderr[-3000:]
    listed = _listed(listing.stdout)
    assert list(listed) == list(COMMANDS)
    missing = {name for name, text in listed.items() if text.startswith("not installed")}
    # every command whose extra is installed loads; every other one says which extra it needs
    assert missing == {name for name, command in COMMANDS.items() if command.extra not in installed | {None}}, (
        f"with streamforge[{extra}]: {listing.stdout}"
    )
    for name in sorted(missing):
        want = COMMANDS[name].extra
        assert listed[name] == f"not installed: streamforge[{want}]"
        refused = environment.run(streamforge, name, "--some-option")
        assert refused.returncode == 2 and f"pip install 'streamforge[{want}]'" in refused.stderr, refused.stderr

    if "dataflow" in installed:  # the Flex Template launcher, as the image runs it
        launched = environment.run(
            environment.python,
            ROOT / "dataflow" / "main.py",
            "--job=fraud",
            f"--input={BUCKET}/orders/*.jsonl",
            f"--warehouse={WAREHOUSE}",
            f"--alerts_topic={ALERTS}",
            *dataflow_args(),
        )
        assert "dry run: streamforge-fraud built, nothing submitted" in launched.stderr, launched.stderr[-3000:]
    if "batch" in installed:  # the job file, alone in its folder as Dataproc runs it
        run_entry_point("batch", "package", "--output", str(tmp_path / "batch"))
        job = environment.run(environment.python, tmp_path / "batch" / "daily_metrics.py", "--help")
        assert job.returncode == 0 and "--reconcile-with" in job.stdout, job.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_a_function_folder_serves_from_its_requirements_alone(name: str, wheel: Path, tmp_path: Path) -> None:
    """The deployable folder (main.py, requirements.txt, the wheel), its requirements installed
    into a clean environment as Cloud Functions' build installs them, served by functions-framework."""
    package(name, tmp_path / "dist", wheel)
    environment = packaged_environment(tmp_path / "dist" / name, tmp_path / "env")
    if name == "ingest":
        env = {
            "STREAMFORGE_INGEST_API_KEYS": f"server:{API_KEY}",
            "STREAMFORGE_INGEST_OUTPUT": f"file://{tmp_path / 'out'}",
        }
    else:  # the deployed form: a Firestore ledger (its client is made at start, nothing is sent)
        env = dispatcher_env(
            [json_webhook("local", "http://127.0.0.1:9/alerts")],
            STREAMFORGE_ALERT_LEDGER="firestore://alert_deliveries",
            FIRESTORE_EMULATOR_HOST="127.0.0.1:9",
            GOOGLE_CLOUD_PROJECT="streamforge-test",
        )
    with running_function(name, env, bundle=tmp_path / "dist" / name, python=environment.python) as function:
        answer = requests.post(function.url, data=b"{}", headers={"Content-Type": "application/json"}, timeout=30)
        lines = function.log_lines()
    # ingest refuses a request without a key; the dispatcher refuses what is not a CloudEvent
    assert answer.status_code == (401 if name == "ingest" else 400), answer.text
    assert any(line.get("message", "").endswith("ready") for line in lines), lines
