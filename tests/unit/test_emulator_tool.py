"""tools/emulator.py: the environment it starts MiniStack with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools import emulator


class FakeProcess:
    pid = 4242

    def poll(self) -> None:
        return None


@pytest.fixture
def started_environments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, str]]:
    """Record the environment of each emulator start instead of starting one."""
    environments: list[dict[str, str]] = []
    starts: list[bool] = []

    def fake_popen(command: list[str], **kwargs: Any) -> FakeProcess:
        environments.append(kwargs["env"])
        starts.append(True)
        return FakeProcess()

    # No emulator is ready before the start, and the fake one is ready after it.
    monkeypatch.setattr(emulator, "is_ready", lambda port: bool(starts))
    monkeypatch.setattr(emulator.subprocess, "Popen", fake_popen)
    monkeypatch.setattr(emulator, "EMULATOR_BIN", tmp_path / "ministack")
    (tmp_path / "ministack").touch()
    return environments


def test_start_persists_s3_objects_by_default(started_environments, tmp_path):
    assert emulator.start(4611, tmp_path / "state") == 0

    environment = started_environments[0]
    assert environment["S3_PERSIST"] == "1"
    assert environment["S3_DATA_DIR"] == str(tmp_path / "state" / "s3")
    assert environment["BIND_HOST"] == "127.0.0.1"
    assert environment["GATEWAY_PORT"] == "4611"


def test_start_keeps_s3_objects_in_memory_on_request(started_environments, tmp_path):
    assert emulator.main(["start", "--port", "4612", "--state-dir", str(tmp_path / "state"),
                          "--s3-in-memory"]) == 0

    environment = started_environments[0]
    assert environment["S3_PERSIST"] == "0"
    assert environment["PERSIST_STATE"] == "1"
