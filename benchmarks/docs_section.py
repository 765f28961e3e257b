"""A benchmark's section of docs/benchmarks.md, between ``<!-- BEGIN name -->`` and ``<!-- END name -->``."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(mark: str, lines: list[str], path: Path = DOC) -> None:
    """Replace the section ``mark`` of ``path`` with ``lines`` (appended when it is not there)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join([f"<!-- BEGIN {mark} -->", *lines, f"<!-- END {mark} -->"])
    if f"<!-- BEGIN {mark} -->" in text:
        head, rest = text.split(f"<!-- BEGIN {mark} -->", 1)
        text = head + block + rest.split(f"<!-- END {mark} -->", 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
