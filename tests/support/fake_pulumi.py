"""A stand-in for the Pulumi CLI (which cannot be installed here), for running docs/infra.md's
deployment steps as written: ``pulumi stack init``, ``pulumi config set [--secret] [--path]``
and ``pulumi up``, with the stack's state where the real CLI keeps it (the stack file holds
plain values and, for secrets, ciphertext), and ``pulumi up`` running the program the way the
real CLI's Python host does (infra/offline.py: from the ``main:`` folder, under Pulumi's mocks
instead of Google Cloud). Each ``up`` writes what it registered to
``.fake-pulumi/<stack>-up-<n>.json`` for the test to read.

Run as ``python fake_pulumi.py ARGS`` (a ``pulumi`` wrapper on the PATH does that).
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pulumi
import yaml

from infra.offline import ProgramError, run_program

STATE = Path(".fake-pulumi")
_CIPHER = "fake-v1:"  # not encryption: the real CLI encrypts with the stack's key


def _stack_file(stack: str) -> Path:
    return Path(f"Pulumi.{stack}.yaml")


def _selected() -> str:
    return (STATE / "selected").read_text().strip()


def _load(stack: str) -> dict[str, Any]:
    path = _stack_file(stack)
    document = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    document["config"] = document.get("config") or {}
    return document


def _key(name: str) -> str:
    return name if ":" in name.split(".", 1)[0] else f"{yaml.safe_load(Path('Pulumi.yaml').read_text())['name']}:{name}"


def config_set(args: list[str]) -> None:
    secret, path = "--secret" in args, "--path" in args
    key, value = [a for a in args if not a.startswith("--")]
    stored: Any = {"secure": _CIPHER + base64.b64encode(value.encode()).decode()} if secret else value
    document = _load(_selected())
    config = document["config"]
    if path:
        top, _, rest = key.partition(".")
        node = config.setdefault(_key(top), {})
        node[rest] = stored
    else:
        config[_key(key)] = stored
    _stack_file(_selected()).write_text(yaml.safe_dump(document, sort_keys=False))


def _decrypt(value: Any, secret: list[bool]) -> Any:
    if isinstance(value, dict) and set(value) == {"secure"}:
        secret.append(True)
        return base64.b64decode(value["secure"].removeprefix(_CIPHER)).decode()
    if isinstance(value, dict):
        return {k: _decrypt(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypt(v, secret) for v in value]
    return value


def _asset(value: Any) -> Any:
    if isinstance(value, pulumi.FileAsset):
        return {"__file_asset__": value.path}
    raise TypeError(f"cannot write {type(value).__name__}")


def up() -> int:
    """The engine's side: the stack's config decrypted and passed to the program, secrets marked."""
    stack = _selected()
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, raw in _load(stack)["config"].items():
        found: list[bool] = []
        value = _decrypt(raw, found)
        config[key] = value if isinstance(value, str) else json.dumps(value)
        if found:
            secret_keys.append(key)
    try:
        resources = run_program(Path.cwd(), config, secret_keys, stack)
    except ProgramError as exc:
        print(f"error: {exc.kind}: {exc}", file=sys.stderr)
        return 255
    runs = sorted(STATE.glob(f"{stack}-up-*.json"))
    (STATE / f"{stack}-up-{len(runs) + 1}.json").write_text(json.dumps([asdict(r) for r in resources], default=_asset))
    print(f"Resources: {len(resources)} to create")
    return 0


def main(argv: list[str]) -> int:
    STATE.mkdir(exist_ok=True)
    if argv[:2] == ["stack", "init"]:
        (STATE / "selected").write_text(argv[2])
        return 0
    if argv[:2] == ["config", "set"]:
        config_set(argv[2:])
        return 0
    if argv[:1] == ["up"]:
        return up()
    print(f"fake pulumi: {' '.join(argv)} is not emulated", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
