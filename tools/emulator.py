"""Start, stop and check a MiniStack instance (the local AWS emulator) on 127.0.0.1.

Each instance has its own port and state folder, so the service that
`make local` serves and the one the test suite deploys never touch each other.
State (S3 objects included) persists in the state folder across restarts.
With --s3-in-memory, S3 objects live in the emulator's memory only and are
gone when it stops. The benchmarks use it because they throw their state away.

    python tools/emulator.py start --port 4566 --state-dir .local/emulator [--s3-in-memory]
    python tools/emulator.py stop  --state-dir .local/emulator
    python tools/emulator.py status --state-dir .local/emulator
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMULATOR_BIN = ROOT / ".venv-emulator" / "bin" / "ministack"
BIND_HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 30
POLL_INTERVAL_SECONDS = 0.3


def endpoint_url(port: int) -> str:
    """Return the emulator's endpoint URL for AWS_ENDPOINT_URL."""
    return f"http://{BIND_HOST}:{port}"


def is_ready(port: int) -> bool:
    """Return whether an emulator responds to its health check on this port."""
    try:
        with urllib.request.urlopen(f"{endpoint_url(port)}/_ministack/health", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _read_pid(state_dir: Path) -> int | None:
    pid_file = state_dir / "ministack.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def _read_port(state_dir: Path) -> int | None:
    try:
        return int((state_dir / "ministack.port").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def start(port: int, state_dir: Path, *, s3_in_memory: bool = False) -> int:
    """Start the emulator unless this state folder's instance is already up.

    S3 objects are written to the state folder unless `s3_in_memory`.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    pid = _read_pid(state_dir)
    recorded_port = _read_port(state_dir)
    if pid is not None and recorded_port == port and is_ready(port):
        print(f"emulator already running (pid {pid}) at {endpoint_url(port)}")
        return 0
    if pid is not None:
        print(
            f"error: the emulator with pid {pid} already uses the state folder {state_dir} "
            f"(port {recorded_port}); stop it first, or give this one another folder with "
            "EMULATOR_STATE_DIR as well as another EMULATOR_PORT",
            file=sys.stderr,
        )
        return 1
    if is_ready(port):
        print(
            f"error: something else already answers on {endpoint_url(port)}; stop it, or "
            "choose another port and state folder with EMULATOR_PORT and EMULATOR_STATE_DIR",
            file=sys.stderr,
        )
        return 1
    if not EMULATOR_BIN.exists():
        print(f"error: {EMULATOR_BIN} is missing; run `make venv` first", file=sys.stderr)
        return 1

    environment = {
        **os.environ,
        "BIND_HOST": BIND_HOST,
        "GATEWAY_PORT": str(port),
        "PERSIST_STATE": "1",
        "STATE_DIR": str(state_dir / "state"),
        "S3_PERSIST": "0" if s3_in_memory else "1",
        "S3_DATA_DIR": str(state_dir / "s3"),
        "LOG_LEVEL": os.environ.get("EMULATOR_LOG_LEVEL", "WARNING"),
    }
    # The emulator must not reach for a real endpoint of its own.
    environment.pop("AWS_ENDPOINT_URL", None)
    log_path = state_dir / "ministack.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(EMULATOR_BIN)],
            cwd=state_dir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (state_dir / "ministack.pid").write_text(f"{process.pid}\n")
    (state_dir / "ministack.port").write_text(f"{port}\n")

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            print(f"error: the emulator exited with {process.returncode}; see {log_path}", file=sys.stderr)
            return 1
        if is_ready(port):
            print(f"emulator running (pid {process.pid}) at {endpoint_url(port)}, state in {state_dir}")
            return 0
        time.sleep(POLL_INTERVAL_SECONDS)
    print(f"error: the emulator did not respond within {READY_TIMEOUT_SECONDS} s; see {log_path}", file=sys.stderr)
    stop(state_dir)
    return 1


def stop(state_dir: Path) -> int:
    """Stop this state folder's emulator and wait until it has saved its state and exited."""
    pid = _read_pid(state_dir)
    if pid is None:
        print("emulator not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(POLL_INTERVAL_SECONDS)
    else:
        print(f"emulator (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT_SECONDS} s; killing it", file=sys.stderr)
        os.killpg(pid, signal.SIGKILL)
    # Function workers run in the emulator's process group; end any left behind.
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    (state_dir / "ministack.pid").unlink(missing_ok=True)
    print(f"emulator stopped (pid {pid})")
    return 0


def status(port: int, state_dir: Path) -> int:
    """Print whether the emulator runs; exit 0 when it responds, 1 otherwise."""
    pid = _read_pid(state_dir)
    recorded_port = _read_port(state_dir) or port
    if pid is not None and is_ready(recorded_port):
        print(f"running (pid {pid}) at {endpoint_url(recorded_port)}, state in {state_dir}")
        return 0
    print(f"not running (state folder {state_dir})")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=4566, help="TCP port on 127.0.0.1 (default 4566)")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".local" / "emulator",
                        help="folder for the emulator's state, S3 data, log and pid file")
    parser.add_argument("--s3-in-memory", action="store_true",
                        help="keep S3 objects in memory only (lost when the emulator stops)")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    if args.command == "start":
        return start(args.port, state_dir, s3_in_memory=args.s3_in_memory)
    if args.command == "stop":
        return stop(state_dir)
    return status(args.port, state_dir)


if __name__ == "__main__":
    sys.exit(main())
