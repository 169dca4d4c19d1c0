"""The Cloud Function tests' fixture: a functions-framework test client (helpers: tests/support/functions.py)."""

from __future__ import annotations

from typing import Any, Callable

import functions_framework
import pytest

from streamforge.functions.packaging import FUNCTIONS
from tests.support.functions import FUNCTIONS_DIR


@pytest.fixture
def function_client(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``function_client(name, **env)``: a functions-framework test client of functions/<name>/main.py,
    the module loaded with ``env`` set (as its environment on Cloud Functions)."""

    def make(name: str, **env: str) -> Any:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        spec = FUNCTIONS[name]
        app = functions_framework.create_app(spec.target, str(FUNCTIONS_DIR / name / "main.py"), spec.signature_type)
        return app.test_client()

    return make
