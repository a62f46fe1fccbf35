"""Deployment package sizes: each function and the common layer, zipped and unzipped.

The sizes come from a `sam build` for AWS (python3.13 wheels for arm64), which
this script runs into --build-dir, because the packages Lambda receives are
that build's. Zipped size is what `sam package` uploads (deflate, level 6);
the largest packages of the layer are listed too.

    python bench/package_size.py [--build-dir .aws-sam/bench-aws] [--results FILE]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import common
from common import Figure, figure, print_figures, write_figures

PACKAGES = {
    "authorizer": "AuthorizerFunction",
    "storer": "StorerFunction",
    "retriever": "RetrieverFunction",
    "layer": "CommonLayer",
}
LARGEST_LAYER_ENTRIES = 8


def build_for_aws(build_dir: Path) -> None:
    """Run `sam build` for the AWS target into `build_dir` and raise SystemExit if it fails."""
    sam = common.ROOT / ".venv" / "bin" / "sam"
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0", "PYTHON": sys.executable,
                   "CALLFLOW_BUILD_TARGET": "aws"}
    # The endpoint is the emulator's, and sam build needs none.
    environment.pop("AWS_ENDPOINT_URL", None)
    completed = subprocess.run(
        [str(sam), "build", "--build-dir", str(build_dir)],
        cwd=common.ROOT, env=environment, capture_output=True, text=True, check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(f"error: sam build for AWS failed:\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}")


def unzipped_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def zipped_bytes(path: Path) -> int:
    """Return the size of `path` zipped as `sam package` zips it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for item in sorted(path.rglob("*")):
            if item.is_file():
                archive.write(item, item.relative_to(path))
    return buffer.tell()


def largest_layer_entries(layer: Path) -> list[dict[str, object]]:
    root = layer / "python"
    sizes = [
        {"entry": entry.name, "bytes": unzipped_bytes(entry) if entry.is_dir() else entry.stat().st_size}
        for entry in root.iterdir()
        if not entry.name.endswith(".dist-info")
    ]
    sizes.sort(key=lambda row: row["bytes"], reverse=True)
    return sizes[:LARGEST_LAYER_ENTRIES]


def build_figures(build_dir: Path) -> tuple[list[Figure], dict[str, object]]:
    figures = []
    for name, directory in PACKAGES.items():
        path = build_dir / directory
        figures.append(figure(f"package_{name}_zipped_bytes", zipped_bytes(path), "bytes",
                              f"{directory} as `sam package` would zip it (AWS build)"))
        figures.append(figure(f"package_{name}_unzipped_bytes", unzipped_bytes(path), "bytes",
                              f"{directory} unzipped (AWS build); Lambda allows 250 MB for a "
                              "function and its layers together"))
    return figures, {"largest_layer_entries": largest_layer_entries(build_dir / "CommonLayer")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=common.ROOT / ".aws-sam" / "bench-aws",
                        help="where to build for AWS (default .aws-sam/bench-aws)")
    parser.add_argument("--no-build", action="store_true",
                        help="measure an existing build in --build-dir instead of building")
    common.results_argument(parser)
    args = parser.parse_args(argv)

    build_dir = args.build_dir.resolve()
    if not args.no_build:
        build_for_aws(build_dir)
    figures, extra = build_figures(build_dir)
    print_figures("deployment package sizes (AWS build: python3.13, arm64)", figures)
    for row in extra["largest_layer_entries"]:
        print(f"    layer entry {row['entry']:<40} {row['bytes']:>12,} bytes")
    write_figures(args.results, figures, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
