"""Test helpers shared by the unit and integration suites."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
CASES_DIR = ROOT / "tests" / "data" / "cases"


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py fresh, as the module `<function>_app`."""
    path = ROOT / "functions" / function / "app.py"
    name = f"{function}_app"
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_fixture(name: str) -> dict:
    """Read one API Gateway event fixture from events/."""
    return json.loads((EVENTS_DIR / name).read_text())


def load_case(name: str) -> list[dict]:
    """Read one sample call flow from tests/data/cases/."""
    return json.loads((CASES_DIR / name).read_text())
