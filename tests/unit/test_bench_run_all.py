"""bench/run_all.py: the warning it prints before a run on a busy machine."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def run_all(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The benchmark scripts import their neighbours (common, latency_proxy) by name.
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    return importlib.import_module("bench.run_all")


def test_idle_machine_gets_no_warning(run_all):
    assert run_all.busy_machine_warning(0.4, 2) is None


def test_busy_machine_gets_warning(run_all):
    warning = run_all.busy_machine_warning(3.1, 2)

    assert warning is not None
    assert "3.1 on 2 cores" in warning
    assert "idle machine" in warning


def test_threshold_scales_with_cores(run_all):
    assert run_all.busy_machine_warning(3.1, 8) is None
