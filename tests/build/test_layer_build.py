"""Build the common layer for each target, as `sam build` does, and check its wheels.

These tests run pip against the package index, so they sit outside tests/unit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.wheel_tags import fits_aws, main as wheel_tags_main, read_wheel_records

ROOT = Path(__file__).resolve().parents[2]
ELF_MACHINE_AARCH64 = 183
ELF_MACHINE_OFFSET = 18


def build_layer(target: str, artifacts_dir: Path) -> None:
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT / "layers" / "common"), "build-CommonLayer"],
        env={**os.environ, "ARTIFACTS_DIR": str(artifacts_dir), "CALLFLOW_BUILD_TARGET": target,
             "PYTHON": sys.executable},
        check=True,
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
