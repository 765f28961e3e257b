"""LUNA16 CSV files: nodule annotations, excluded annotations, scan lists and findings.

The LUNA16 challenge (Setio et al., Medical Image Analysis 42:1-13, 2017) scores a detector from
four CSV files, all with world coordinates in mm in the order of the scan's MetaImage/ITK axes
``(x, y, z)``:

- ``annotations.csv``: ``seriesuid,coordX,coordY,coordZ,diameter_mm`` (the nodules to find;
  diameter > 0).
- ``annotations_excluded.csv``: the same columns; the "irrelevant findings" that count neither
  way. ``diameter_mm = -1`` (any negative value) means the size is unknown; scoring then uses
  10 mm, as LUNA16's script does.
- ``seriesuids.csv``: one series UID a line, no header: the scans that are scored, nodules or not.
- findings (a detector's output, LUNA16's "results" or candidates):
  ``seriesuid,coordX,coordY,coordZ[,diameter_mm],probability``. ``diameter_mm`` is optional
  (LUNA16 candidates have none); an empty cell means none. ``probability`` is any finite score.
  A row with no coordinates and no probability (a scan without a finding, as ``medsight predict
  --csv`` writes it) is skipped.

Files are UTF-8 (a byte-order mark is allowed) with a header row (except ``seriesuids.csv``).
Columns other than the ones read are ignored. A bad file raises :class:`~medsight.errors.DataError`
naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from medsight.errors import DataError

__all__ = ["Nodule", "Finding", "read_annotations", "read_excluded", "read_findings", "read_findings_scans",
           "read_negatives", "read_seriesuids",
           "write_findings", "ANNOTATION_COLUMNS", "FINDING_COLUMNS", "UNKNOWN_SIZE_DIAMETER_MM"]

#: The columns of ``annotations.csv`` and ``annotations_excluded.csv``.
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
#: The columns of a findings file as written (``diameter_mm`` is optional on input).
FINDING_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "probability")
#: The diameter LUNA16 scores an excluded annotation of unknown size (``diameter_mm < 0``) with.
UNKNOWN_SIZE_DIAMETER_MM = 10.0


@dataclass(frozen=True)
class Nodule:
    """An annotated nodule (or an excluded annotation).

    Attributes:
        seriesuid: the scan's series instance UID.
        center_mm: world coordinates ``(x, y, z)`` in mm, LUNA16's ``coordX, coordY, coordZ``.
        diameter_mm: the diameter in mm; negative for an excluded annotation of unknown size.
    """

    seriesuid: str
    center_mm: tuple[float, float, float]
    diameter_mm: float

    @property
    def scoring_diameter_mm(self) -> float:
        """The diameter the hit test uses: ``diameter_mm``, or 10 mm when it is unknown (negative)."""
        return self.diameter_mm if self.diameter_mm >= 0 else UNKNOWN_SIZE_DIAMETER_MM


@dataclass(frozen=True)
class Finding:
    """A detector's mark on a scan.

    Attributes:
        seriesuid: the scan's series instance UID.
        center_mm: world coordinates ``(x, y, z)`` in mm.
        probability: the detector's score (higher is more suspicious; any finite number).
        diameter_mm: the estimated diameter in mm, when the detector gives one (not used in scoring).
    """

    seriesuid: str
    center_mm: tuple[float, float, float]
    probability: float
    diameter_mm: float | None = None


def _rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the CSV file ({exc})", path=path) from None
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)}; expected a header with {','.join(required)}, "
                        f"found {','.join(columns) or 'no header'}", path=path)
    return [(line, {(k or "").strip(): (v or "") for k, v in row.items()})
            for line, row in enumerate(reader, start=2)]


def _number(path: Path, line: int, row: dict[str, str], column: str) -> float:
    text = row.get(column, "").strip()
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"line {line}: column {column} must be a number; got {text!r}", path=path) from None
    if not math.isfinite(value):
        raise DataError(f"line {line}: column {column} must be a finite number; got {text!r}", path=path)
    return value


def _uid(path: Path, line: int, row: dict[str, str]) -> str:
    uid = row.get("seriesuid", "").strip()
    if not uid:
        raise DataError(f"line {line}: column seriesuid is empty", path=path)
    return uid


def _center(path: Path, line: int, row: dict[str, str]) -> tuple[float, float, float]:
    return (_number(path, line, row, "coordX"), _number(path, line, row, "coordY"), _number(path, line, row, "coordZ"))


def _read_nodules(path: str | Path, *, allow_unknown_size: bool) -> list[Nodule]:
    path = Path(path)
    out = []
    for line, row in _rows(path, ANNOTATION_COLUMNS):
        d = _number(path, line, row, "diameter_mm")
        if d <= 0 and not (allow_unknown_size and d < 0):
            need = "> 0 (or negative for an unknown size)" if allow_unknown_size else "> 0"
            raise DataError(f"line {line}: diameter_mm must be {need}; got {d:g}", path=path)
        out.append(Nodule(_uid(path, line, row), _center(path, line, row), d))
    return out


def read_annotations(path: str | Path) -> list[Nodule]:
    """Read ``annotations.csv``: the nodules a detector must find.

    Raises:
        DataError: unreadable file, a missing column, an empty UID, a coordinate or diameter that
            is not a finite number, or a diameter that is not > 0.
    """
    return _read_nodules(path, allow_unknown_size=False)


def read_excluded(path: str | Path) -> list[Nodule]:
    """Read ``annotations_excluded.csv``: annotations whose hits count neither as TP nor FP.

    A negative ``diameter_mm`` (LUNA16 writes -1) means the size is unknown.

    Raises:
        DataError: as :func:`read_annotations`, except that a negative diameter is allowed (0 is not).
    """
    return _read_nodules(path, allow_unknown_size=True)


def read_negatives(path: str | Path) -> list[Nodule]:
    """Read the class-0 rows of a LUNA16 ``candidates.csv``: places that are not nodules (as
    :class:`Nodule` rows of unknown size, ``diameter_mm`` -1). Class-1 rows are skipped (the
    nodules come from ``annotations.csv``).

    Raises:
        DataError: unreadable file, a missing column, an empty UID, a coordinate that is not a
            finite number, or a class other than 0 or 1.
    """
    path = Path(path)
    out = []
    for line, row in _rows(path, ("seriesuid", "coordX", "coordY", "coordZ", "class")):
        label = row.get("class", "").strip()
        if label not in ("0", "1"):
            raise DataError(f"line {line}: column class must be 0 or 1; got {label!r}", path=path)
        if label == "0":
            out.append(Nodule(_uid(path, line, row), _center(path, line, row), -1.0))
    return out


def read_findings(path: str | Path) -> list[Finding]:
    """Read a findings (results or candidates) file.

    A row whose coordinates and probability are all empty is no finding and is skipped:
    ``medsight predict --csv`` writes one for every scan in which nothing was found (and for an
    input that could not be read), so its table can be scored as it is.

    Raises:
        DataError: unreadable file, a missing column (``diameter_mm`` may be absent), an empty UID,
            or a coordinate, probability or (non-empty) diameter that is not a finite number.
    """
    path = Path(path)
    out = []
    for line, row in _rows(path, ("seriesuid", "coordX", "coordY", "coordZ", "probability")):
        if not any(row.get(c, "").strip() for c in ("coordX", "coordY", "coordZ", "probability")):
            continue  # a scan read without a finding (or an input that failed): ``medsight predict --csv`` rows
        d = _number(path, line, row, "diameter_mm") if row.get("diameter_mm", "").strip() else None
        out.append(Finding(_uid(path, line, row), _center(path, line, row),
                           _number(path, line, row, "probability"), d))
    return out


def read_findings_scans(path: str | Path) -> list[str]:
    """The series UIDs a findings file names, in order, once each: those with findings and those
    on rows without one (a scan that was read and had no finding); empty UIDs are skipped.

    Raises:
        DataError: as :func:`read_findings`.
    """
    path = Path(path)
    return list(dict.fromkeys(row["seriesuid"].strip() for _, row in _rows(path, ("seriesuid",))
                              if row.get("seriesuid", "").strip()))


def read_seriesuids(path: str | Path) -> list[str]:
    """Read ``seriesuids.csv``: one UID a line (first column), no header; blank lines are skipped.

    A first line ``seriesuid`` is taken as a header and skipped.

    Raises:
        DataError: unreadable file, a repeated UID, or no UID at all.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the series list ({exc})", path=path) from None
    uids: list[str] = []
    seen: set[str] = set()
    for line, row in enumerate(csv.reader(text.splitlines()), start=1):
        uid = row[0].strip() if row else ""
        if not uid or (line == 1 and uid == "seriesuid"):
            continue
        if uid in seen:
            raise DataError(f"line {line}: series {uid} is listed twice", path=path)
        seen.add(uid)
        uids.append(uid)
    if not uids:
        raise DataError("the series list is empty; expected one series UID a line", path=path)
    return uids


def write_findings(path: str | Path, findings: Iterable[Finding]) -> Path:
    """Write findings as ``seriesuid,coordX,coordY,coordZ,diameter_mm,probability``.

    Numbers are written at full precision (``repr``), so reading the file back gives the same
    floats; a finding without a diameter gets an empty ``diameter_mm`` cell.
    """
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(FINDING_COLUMNS)
        for x in findings:
            w.writerow([x.seriesuid, *(repr(float(c)) for c in x.center_mm),
                        "" if x.diameter_mm is None else repr(float(x.diameter_mm)), repr(float(x.probability))])
    return path
