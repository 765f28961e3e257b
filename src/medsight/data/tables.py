"""CSV/TSV manifests of a dataset: one reader for every layout that lists its cases in a table.

A manifest is UTF-8 (a byte-order mark is allowed), comma-separated (tab-separated when the file
ends in ``.tsv``), with a header row. Paths in it are relative to the manifest's folder unless
absolute. Besides the columns a layout reads, a ``time`` column gives a case's acquisition date
(ISO 8601 or DICOM ``YYYYMMDD``) and every other column is a covariate of the case (numbers read
as numbers, empty cells left out).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import DataError

__all__ = ["Manifest", "read_manifest", "resolve_path", "row_covariates", "TIME_COLUMN"]

#: The column that holds a case's acquisition date or datetime.
TIME_COLUMN = "time"


@dataclass
class Manifest:
    """A manifest's rows as read.

    Attributes:
        path: the file.
        rows: ``(line, row)`` per data row; ``line`` is the 1-based line number (the header is 1),
            ``row`` maps column name → cell text.
        columns: the header's column names.
        sha256: checksum of the file's text (a dataset fingerprint uses it).
    """

    path: Path
    rows: list[tuple[int, dict[str, str]]]
    columns: list[str]
    sha256: str


def read_manifest(path: str | Path, *, required: Sequence[str], header: str) -> Manifest:
    """Read a manifest and check that it has the ``required`` columns.

    Args:
        path: the CSV or TSV file.
        required: columns every manifest of this layout must have.
        header: the expected header as shown to the user (``"path,label[,split]"``).

    Raises:
        DataError: unreadable file, no rows, or a required column missing.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delim)
    rows = list(reader)
    if not rows:
        raise DataError(f"{path}: the manifest is empty; expected a header '{header}' and rows")
    columns = list(reader.fieldnames or [])
    missing = [c for c in required if c not in columns]
    if missing:
        need = " and ".join(f"'{c}'" for c in required)
        raise DataError(f"{path}: the manifest needs columns {need} (header {header}); found {sorted(columns)}")
    return Manifest(path=path, rows=list(enumerate(rows, start=2)), columns=columns,
                    sha256=hashlib.sha256(text.encode()).hexdigest())


def resolve_path(root: Path, rel: str, *, where: str, confine: bool = False) -> Path:
    """A path from a manifest or index: relative to ``root`` unless absolute.

    Args:
        confine: refuse a relative path that leads out of ``root`` (``../``), as a dataset
            folder's index must not point outside it.

    Raises:
        DataError: with ``confine``, a relative path that leaves ``root`` (naming ``where``).
    """
    p = Path(rel)
    if p.is_absolute():
        return p
    p = root / p
    if confine:
        try:
            p.resolve().relative_to(root.resolve())
        except ValueError:
            raise DataError(f"{where}: path {rel!r} leaves the dataset folder") from None
    return p


def _value(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def row_covariates(row: dict[str, str], *, known: Sequence[str]) -> dict[str, int | float | str]:
    """A row's covariates: every column but ``known`` and ``time``, numbers as numbers, empty cells left out."""
    skip = {*known, TIME_COLUMN}
    return {k: _value(v.strip()) for k, v in row.items()
            if k is not None and k not in skip and isinstance(v, str) and v.strip()}
