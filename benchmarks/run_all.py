"""Run every benchmark script in this folder (bench_*.py), one after the other.

Usage: python benchmarks/run_all.py [NAME ...]   (NAME: classification, io, memory, segmentation, service)
Each script writes its own results into benchmarks/results/ and its section of docs/benchmarks.md.
Benchmarks are not part of the test suite: they train models and take minutes to an hour.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(names: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
