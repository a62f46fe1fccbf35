"""Run every benchmark against an emulator of its own and write bench-results.json.

`make bench` runs this. It starts MiniStack on 127.0.0.1 (port 4595, state in
.local/bench-emulator, emptied first, S3 objects in memory) and deploys the template as the stack
callflow-bench. Then it runs the scripts below one after another and merges
their figures into bench-results.json at the repository root. The emulator
is stopped however the run ends, and its state folder deleted unless
--keep-state is given. docs/benchmarks.md explains every figure.

    python bench/run_all.py [--port 4595] [--state-dir .local/bench-emulator] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import common

DEFAULT_PORT = 4595
DEFAULT_STATE_DIR = common.ROOT / ".local" / "bench-emulator"
BUILD_DIR = common.ROOT / ".aws-sam" / "bench"
AWS_BUILD_DIR = common.ROOT / ".aws-sam" / "bench-aws"
RESULTS_FILE = common.ROOT / "bench-results.json"
SCRIPT_TIMEOUT_SECONDS = 900
# A one-minute load average above this, per core, makes run_all warn that the
# machine is busy. The idle 2-core machine of docs/benchmarks.md showed about 0.4.
BUSY_LOAD_PER_CORE = 0.5

# Order matters: the timing benchmarks run while the bucket is small, and the
# 50,000-event data set is loaded last, because the emulator's LIST reads
# every key of a bucket.
SCRIPTS = (
    ("package_size", ["--build-dir", str(AWS_BUILD_DIR)]),
    ("cold_start", ["--build-dir", str(BUILD_DIR)]),
    ("storer_write", []),
    ("retriever_fetch", []),
    ("api_latency", []),
    ("objects_scanned", []),
)


def machine() -> dict[str, Any]:
    """Describe the machine the run happens on."""
    cpu_model = ""
    memory_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model or platform.processor(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def busy_machine_warning(load_average: float, cores: int) -> str | None:
    """Return a warning when other work keeps the machine busy, or None.

    The storer's ratio moved from 1.12 to 1.39 when another emulator ran on
    the 2-core machine of docs/benchmarks.md.
    """
    if load_average <= BUSY_LOAD_PER_CORE * cores:
        return None
    return (
        f"warning: the load average is {load_average:.1f} on {cores} cores. Other work "
        "competes with the emulator and moves the ratios; for figures to compare with the "
        "goals, run the benchmarks on an otherwise idle machine."
    )


def git_commit() -> str:
    completed = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=common.ROOT,
                               capture_output=True, text=True, check=False)
    return completed.stdout.strip()


def run(command: list[str], environment: dict[str, str], timeout: float | None = None) -> int:
    """Print `command`, run it from the repository root and return its exit code."""
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=common.ROOT, env=environment, timeout=timeout, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"emulator port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="emulator state folder, emptied before the run (default .local/bench-emulator)")
    parser.add_argument("--only", nargs="+", choices=[name for name, _ in SCRIPTS],
                        help="run only these benchmarks")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep the emulator's state folder, with its log and state, after "
                             "the run (S3 objects live only in the emulator's memory). By "
                             "default the folder is deleted")
    args = parser.parse_args(argv)

    started = time.monotonic()
    python = sys.executable
    state_dir = args.state_dir.resolve()
    endpoint = f"http://127.0.0.1:{args.port}"
    environment = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
        "CALLFLOW_STACK_NAME": common.DEFAULT_STACK_NAME,
    }
    environment.pop("AWS_PROFILE", None)
    info = machine()
    warning = busy_machine_warning(info["load_average_at_start"][0], info["nproc"] or 1)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    emulator = str(common.ROOT / "tools" / "emulator.py")
    stop_emulator = [python, emulator, "stop", "--state-dir", str(state_dir)]
    # An emulator left running by an interrupted run would keep the port.
    run(stop_emulator, environment)
    shutil.rmtree(state_dir, ignore_errors=True)
    # S3 stays in memory because the state is thrown away after the run, and
    # writing every object to disk would add the emulator's file writes to each request.
    if run([python, emulator, "start", "--port", str(args.port), "--state-dir", str(state_dir),
            "--s3-in-memory"], environment):
        return 1

    figures: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    failed: list[str] = []
    try:
        deploy = [python, str(common.ROOT / "tools" / "local_stack.py"), "deploy",
                  "--stack-name", common.DEFAULT_STACK_NAME, "--build-dir", str(BUILD_DIR)]
        if run(deploy, environment):
            return 1
        with tempfile.TemporaryDirectory(prefix="callflow-bench-") as work:
            for name, script_args in SCRIPTS:
                if args.only and name not in args.only:
                    continue
                results = Path(work) / f"{name}.json"
                script = str(common.ROOT / "bench" / f"{name}.py")
                step_started = time.monotonic()
                code = run([python, script, *script_args, "--results", str(results)],
                           environment, timeout=SCRIPT_TIMEOUT_SECONDS)
                print(f"  {name} took {time.monotonic() - step_started:.0f} s", flush=True)
                if code or not results.exists():
                    failed.append(name)
                    continue
                document = json.loads(results.read_text())
                figures.extend(document["figures"])
                extra[name] = document["extra"]
    finally:
        run(stop_emulator, environment)
        if not args.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)

    info["load_average_at_end"] = os.getloadavg()
    report = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "git_commit": git_commit(),
        "duration_seconds": round(time.monotonic() - started),
        "machine": info,
        "failed_benchmarks": failed,
        "figures": figures,
        "extra": extra,
    }
    RESULTS_FILE.write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    return 1 if failed else 0


def print_summary(report: dict[str, Any]) -> None:
    """Print the figures that have a goal, and the benchmarks that failed."""
    with_goal = [common.Figure(**item) for item in report["figures"] if item["goal"] is not None]
    title = f"summary ({report['duration_seconds']} s), written to {RESULTS_FILE.name}"
    common.print_figures(title, with_goal)
    if report["failed_benchmarks"]:
        print(f"  failed: {', '.join(report['failed_benchmarks'])}")


if __name__ == "__main__":
    sys.exit(main())
