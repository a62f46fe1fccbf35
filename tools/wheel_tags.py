"""Print the wheel tags a built layer contains, and check them against a build target.

    python tools/wheel_tags.py .aws-sam/build/CommonLayer --target aws
    python tools/wheel_tags.py .aws-sam/local/CommonLayer --target local

`aws` accepts pure-Python wheels and CPython 3.13 (or abi3) wheels for arm64
Linux, which is what the template's python3.13 / arm64 runtime loads. `local`
accepts the wheels the running interpreter can load, because the emulator runs
functions with this machine's Python. Exits 1 when any wheel does not fit.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, parse_tag, sys_tags

AWS_PYTHON = (3, 13)
AWS_PLATFORM_SUFFIX = "_aarch64"


@dataclass(frozen=True)
class WheelRecord:
    """One installed distribution and the tags its WHEEL file declares."""

    distribution: str
    tags: frozenset[Tag]


def read_wheel_records(layer_dir: Path) -> list[WheelRecord]:
    """Read every *.dist-info/WHEEL file under the layer's python/ folder."""
    records = []
    for wheel_file in sorted((layer_dir / "python").glob("*.dist-info/WHEEL")):
        tags: set[Tag] = set()
        for line in wheel_file.read_text().splitlines():
            if line.startswith("Tag:"):
                tags |= parse_tag(line.split(":", 1)[1].strip())
        records.append(WheelRecord(wheel_file.parent.name.removesuffix(".dist-info"), frozenset(tags)))
    return records


def fits_aws(tag: Tag) -> bool:
    """Return whether the python3.13 arm64 Lambda runtime can load a wheel with this tag."""
    if tag.platform == "any":
        return tag.interpreter.startswith("py3") and tag.abi == "none"
    if not tag.platform.endswith(AWS_PLATFORM_SUFFIX) or "linux" not in tag.platform:
        return False
    if tag.abi == "abi3":
        minor = int(tag.interpreter.removeprefix("cp3"))
        return tag.interpreter.startswith("cp3") and minor <= AWS_PYTHON[1]
    return tag.interpreter == f"cp{AWS_PYTHON[0]}{AWS_PYTHON[1]}"


def fits_local(tag: Tag) -> bool:
    """Return whether this interpreter can load a wheel with this tag."""
    return tag in set(sys_tags())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("layer_dir", type=Path, help="the built layer folder (it contains python/)")
    parser.add_argument("--target", choices=["aws", "local"], required=True)
    args = parser.parse_args(argv)

    records = read_wheel_records(args.layer_dir)
    if not records:
        print(f"error: no *.dist-info/WHEEL under {args.layer_dir / 'python'}; build the layer first",
              file=sys.stderr)
        return 1
    check = fits_aws if args.target == "aws" else fits_local
    misfits = 0
    for record in records:
        fits = any(check(tag) for tag in record.tags)
        misfits += not fits
        tags = ", ".join(sorted(str(tag) for tag in record.tags))
        print(f"{'ok  ' if fits else 'MISS'} {record.distribution}: {tags}")
    print(f"{len(records) - misfits} of {len(records)} wheels fit target {args.target}")
    return 1 if misfits else 0


if __name__ == "__main__":
    sys.exit(main())
