"""Build the common layer for each target, as `sam build` does, and check its wheels and bytecode.

These tests run pip against the package index, so they sit outside tests/unit.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.wheel_tags import fits_aws, main as wheel_tags_main, read_wheel_records

ROOT = Path(__file__).resolve().parents[2]
LAYER_MAKEFILE = ROOT / "layers" / "common" / "Makefile"
ELF_MACHINE_AARCH64 = 183
ELF_MACHINE_OFFSET = 18
LAMBDA_PYTHON_VERSION = "3.13"
# A pyc header (PEP 552) is the magic number, then a 32-bit little-endian flags
# field: bit 0 set means hash-based, bit 1 set means check the source's hash.
PYC_FLAGS_UNCHECKED_HASH = 0b01
# A version no interpreter has, so that the layer's Makefile finds none for it.
MISSING_PYTHON_VERSION = "3.99"


def build_layer(target: str, artifacts_dir: Path) -> None:
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT / "layers" / "common"), "build-CommonLayer"],
        env={**os.environ, "ARTIFACTS_DIR": str(artifacts_dir), "CALLFLOW_BUILD_TARGET": target,
             "PYTHON": sys.executable},
        check=True,
    )


def python_version(interpreter: str) -> str | None:
    """Return the major.minor version `interpreter` runs, or None if it does not run."""
    try:
        completed = subprocess.run(
            [interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=60,
        )
    except OSError:
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def find_lambda_python() -> str | None:
    """Return a Python 3.13 interpreter from BYTECODE_PYTHON, PATH or pyenv, or None."""
    candidates = [os.environ.get("BYTECODE_PYTHON"), shutil.which(f"python{LAMBDA_PYTHON_VERSION}")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=60).stdout.strip()
        pattern = f"{root}/versions/{LAMBDA_PYTHON_VERSION}.*/bin/python{LAMBDA_PYTHON_VERSION}"
        candidates += sorted(glob.glob(pattern))
    for candidate in candidates:
        # A pyenv shim exists for every installed version but fails unless it is selected.
        if candidate and python_version(candidate) == LAMBDA_PYTHON_VERSION:
            return candidate
    return None


def bytecode_of(interpreter: str) -> tuple[str, bytes]:
    """Return the cache tag (cpython-313) and the pyc magic number of `interpreter`."""
    completed = subprocess.run(
        [interpreter, "-c", "import importlib.util, sys; "
                            "print(sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    cache_tag, magic = completed.stdout.split()
    return cache_tag, bytes.fromhex(magic)


def bytecode_problems(python_dir: Path, cache_tag: str, magic: bytes) -> list[str]:
    """List each Python file under `python_dir` whose pyc is missing, of another version or not unchecked-hash."""
    problems = []
    for source in sorted(python_dir.rglob("*.py")):
        pyc = source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"
        name = source.relative_to(python_dir)
        if not pyc.is_file():
            problems.append(f"{name}: no {pyc.name}")
            continue
        header = pyc.read_bytes()[:8]
        if header[:4] != magic:
            problems.append(f"{name}: magic number {header[:4].hex()}, expected {magic.hex()}")
        flags = int.from_bytes(header[4:8], "little")
        if flags != PYC_FLAGS_UNCHECKED_HASH:
            problems.append(f"{name}: pyc flags {flags:#04b}, expected {PYC_FLAGS_UNCHECKED_HASH:#04b}")
    return problems


def make_bytecode(directory: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run the layer Makefile's `bytecode` target on `directory` with these make variables."""
    environment = {key: value for key, value in os.environ.items() if key != "BYTECODE_PYTHON"}
    environment.update(PYTHON=sys.executable, **variables)
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(LAYER_MAKEFILE), "bytecode", f"BYTECODE_DIR={directory}"],
        env=environment, capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def aws_layer(tmp_path_factory) -> Path:
    artifacts_dir = tmp_path_factory.mktemp("aws-layer")
    build_layer("aws", artifacts_dir)
    return artifacts_dir


@pytest.fixture(scope="module")
def local_layer(tmp_path_factory) -> Path:
    artifacts_dir = tmp_path_factory.mktemp("local-layer")
    build_layer("local", artifacts_dir)
    return artifacts_dir


def test_aws_layer_wheels_fit_python313_arm64(aws_layer, capsys):
    assert wheel_tags_main([str(aws_layer), "--target", "aws"]) == 0
    print(capsys.readouterr().out)


def test_aws_layer_native_code_is_aarch64(aws_layer):
    libraries = list((aws_layer / "python").rglob("*.so"))

    assert libraries, "expected compiled extensions (cryptography, cffi) in the layer"
    for library in libraries:
        header = library.read_bytes()[:20]
        machine = int.from_bytes(header[ELF_MACHINE_OFFSET:ELF_MACHINE_OFFSET + 2], "little")
        assert machine == ELF_MACHINE_AARCH64, library.name


def test_aws_layer_has_no_host_only_wheel(aws_layer):
    records = read_wheel_records(aws_layer)
    compiled = [record for record in records if not any(tag.platform == "any" for tag in record.tags)]

    assert compiled
    for record in compiled:
        assert all(fits_aws(tag) for tag in record.tags), record.distribution


def test_local_layer_wheels_fit_this_python(local_layer):
    assert wheel_tags_main([str(local_layer), "--target", "local"]) == 0


def test_local_layer_imports_on_this_python(local_layer):
    code = (
        "import jwt, aws_lambda_powertools, callflow.events, callflow.auth;"
        "from cryptography.hazmat.primitives.asymmetric import ec;"
        "ec.generate_private_key(ec.SECP256R1())"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(local_layer / 'python')!r}); {code}"],
        capture_output=True, text=True,
    )

    assert result.returncode == 0, result.stderr


def test_layer_records_its_target(aws_layer, local_layer):
    assert (aws_layer / "python" / "callflow-build-target.txt").read_text().strip() == "aws"
    assert (local_layer / "python" / "callflow-build-target.txt").read_text().strip() == "local"


def test_local_layer_has_bytecode_for_every_module(local_layer):
    python_dir = local_layer / "python"
    assert (python_dir / "callflow" / "store.py").is_file()

    problems = bytecode_problems(python_dir, sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER)

    assert problems == []


def test_aws_layer_has_python313_bytecode(aws_layer):
    interpreter = find_lambda_python()
    if interpreter is None:
        pytest.skip(f"no Python {LAMBDA_PYTHON_VERSION} interpreter here, so the aws layer ships without bytecode")
    cache_tag, magic = bytecode_of(interpreter)
    python_dir = aws_layer / "python"
    assert (python_dir / "callflow" / "store.py").is_file()

    problems = bytecode_problems(python_dir, cache_tag, magic)

    assert problems == []
    other_versions = [pyc.name for pyc in python_dir.rglob("*.pyc") if not pyc.name.endswith(f".{cache_tag}.pyc")]
    assert other_versions == []


def test_bytecode_without_interpreter_warns(tmp_path):
    (tmp_path / "module.py").write_text("VALUE = 1\n")

    result = make_bytecode(tmp_path, CALLFLOW_BUILD_TARGET="aws", LAMBDA_PYTHON_VERSION=MISSING_PYTHON_VERSION)

    assert result.returncode == 0, result.stderr
    # On stdout, because `sam build` shows a Makefile's stderr only when it fails.
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stdout
    assert "without bytecode" in warnings[0]
    assert "BYTECODE_PYTHON=" in warnings[0]
    assert not (tmp_path / "__pycache__").exists()


def test_bytecode_python_of_other_version_fails(tmp_path):
    (tmp_path / "module.py").write_text("VALUE = 1\n")

    result = make_bytecode(tmp_path, CALLFLOW_BUILD_TARGET="aws", LAMBDA_PYTHON_VERSION=MISSING_PYTHON_VERSION,
                           BYTECODE_PYTHON=sys.executable)

    assert result.returncode != 0
    assert f"BYTECODE_PYTHON={sys.executable} is not a Python {MISSING_PYTHON_VERSION} interpreter" in result.stderr
    assert not (tmp_path / "__pycache__").exists()


def test_bytecode_does_not_depend_on_build_folder(tmp_path):
    folders = [tmp_path / "first", tmp_path / "second" / "nested"]
    for folder in folders:
        (folder / "package").mkdir(parents=True)
        (folder / "package" / "module.py").write_text("def fail():\n    raise ValueError('fail')\n")
        assert make_bytecode(folder, CALLFLOW_BUILD_TARGET="local").returncode == 0

    pycs = [folder / "package" / "__pycache__" / f"module.{sys.implementation.cache_tag}.pyc" for folder in folders]
    assert pycs[0].read_bytes() == pycs[1].read_bytes()
    assert str(tmp_path).encode() not in pycs[0].read_bytes()


@pytest.mark.parametrize("function", ["authorizer", "storer", "retriever"])
def test_function_build_compiles_handler(function, tmp_path):
    # As `sam build` does: make runs in a copy of the source folder, with the
    # original Makefile. A stand-in app.py keeps the test independent of the handler's code.
    source_dir, artifacts_dir = tmp_path / "source", tmp_path / "artifacts"
    source_dir.mkdir()
    artifacts_dir.mkdir()
    (source_dir / "app.py").write_text("def lambda_handler(event, context):\n    return event\n")
    makefile = ROOT / "functions" / function / "Makefile"
    logical_id = f"{function.capitalize()}Function"
    environment = {key: value for key, value in os.environ.items() if key != "BYTECODE_PYTHON"}
    environment.update(ARTIFACTS_DIR=str(artifacts_dir), CALLFLOW_BUILD_TARGET="local", PYTHON=sys.executable)

    subprocess.run(["make", "--no-print-directory", "--makefile", str(makefile), f"build-{logical_id}"],
                   cwd=source_dir, env=environment, check=True, timeout=300)

    assert (artifacts_dir / "app.py").is_file()
    assert bytecode_problems(artifacts_dir, sys.implementation.cache_tag, importlib.util.MAGIC_NUMBER) == []
