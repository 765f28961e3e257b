"""The response task's data: a CSV manifest of patients, and how covariates are encoded.

A manifest has one row per patient: ``image`` (a path relative to the manifest, or absolute),
``treatment`` (the one received), the clinical covariates, and ``outcome`` (1 responded, 0
did not). Optional columns: ``patient`` (the key that tells two rows of one patient apart;
default the image path) and ``split`` (``train``, ``val``, ``test``; without it the rows are
split 70/15/15 at random, seeded). Every other column is a covariate unless the config lists
the covariates. Errors name the row (``manifest.csv row 7``: the file's line number).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.data.case import Case
from medsight.errors import DataError

__all__ = ["ResponseRow", "CovariateCoder", "read_response_manifest", "RESERVED"]

#: Columns that are never covariates.
RESERVED = ("patient", "image", "treatment", "outcome", "split", "time", "event")
_TRUE, _FALSE = {"1", "1.0", "true", "yes", "responder"}, {"0", "0.0", "false", "no", "non-responder"}


@dataclass
class ResponseRow:
    """One manifest row: where it is, the patient's key, image, treatment, covariates, outcome."""

    where: str
    patient: str
    image: str
    treatment: str
    covariates: dict[str, str]
    outcome: int | None
    split: str

    def case(self) -> Case:
        return Case(self.patient, {"image": self.image}, label=self.outcome,
                    covariates={"treatment": self.treatment, **self.covariates}, split=self.split)


def _outcome(value: str, where: str) -> int | None:
    text = value.strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    if text in ("", "na", "nan"):
        return None
    raise DataError(f"{where}: outcome must be 1 (responded) or 0 (did not); got {value!r}")


def read_response_manifest(source: str | Path, *, covariates: Sequence[str] | None = None,
                           seed: int = 0) -> list[ResponseRow]:
    """Every row of the manifest at ``source`` (see the module docstring).

    Args:
        covariates: the covariate columns (None: every column that is not reserved).

    Raises:
        DataError: no such file, a missing column, an empty image or treatment, a missing
            covariate value, an outcome that is not 0/1, a split that is not train/val/test, or one
            patient in two rows with different outcomes; each names the row.
    """
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: the response task reads a CSV manifest (image,treatment,<covariates>,outcome); "
                        "no such file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        raw = list(reader)
    missing = [c for c in ("image", "treatment", "outcome") if c not in header]
    if missing:
        raise DataError(f"{path}: the manifest lacks the column(s) {', '.join(missing)}; it has {', '.join(header)}")
    names = [h for h in header if h not in RESERVED] if covariates is None else list(covariates)
    absent = [c for c in names if c not in header]
    if absent:
        raise DataError(f"{path}: the covariate column(s) {', '.join(absent)} are not in the manifest")
    rng = np.random.default_rng(seed)
    rows: list[ResponseRow] = []
    seen: dict[str, ResponseRow] = {}
    for line, r in enumerate(raw, start=2):
        r = {(k or "").strip(): (v or "").strip() for k, v in r.items()}
        where = f"{path.name} row {line}"
        image, treatment = r.get("image", ""), r.get("treatment", "")
        if not image:
            raise DataError(f"{where}: no image")
        if not treatment:
            raise DataError(f"{where}: no treatment")
        empty = [c for c in names if r.get(c, "") in ("", "NA", "nan", "NaN")]
        if empty:
            raise DataError(f"{where}: covariate {', '.join(repr(c) for c in empty)} is missing")
        split = r.get("split", "") or str(rng.choice(["train", "val", "test"], p=[0.7, 0.15, 0.15]))
        if split not in ("train", "val", "test"):
            raise DataError(f"{where}: split must be train, val or test; got {split!r}")
        full = image if Path(image).is_absolute() else str(path.parent / image)
        row = ResponseRow(where=where, patient=r.get("patient") or image, image=full, treatment=treatment,
                          covariates={c: r[c] for c in names}, outcome=_outcome(r.get("outcome", ""), where),
                          split=split)
        first = seen.get(row.patient)
        if first is not None and first.outcome != row.outcome:
            raise DataError(f"{where}: patient {row.patient!r} is also in {first.where.split(' ', 1)[1]} with "
                            f"outcome {first.outcome}; here {row.outcome}")
        seen.setdefault(row.patient, row)
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: the manifest has no rows")
    return rows


@dataclass
class CovariateCoder:
    """Encodes covariates as the network's ``z``: numbers z-scored with the training set's mean
    and standard deviation, categories one-hot over the levels seen in training (the manifest
    stores them, :meth:`to_manifest`)."""

    columns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    @property
    def width(self) -> int:
        return sum(1 if c["kind"] == "number" else len(c["levels"]) for c in self.columns)

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, str]], names: Sequence[str], *,
            categorical: Sequence[str] = ()) -> CovariateCoder:
        """Numbers where every training value parses as one (unless named in ``categorical``)."""
        columns: list[dict[str, Any]] = []
        for name in names:
            values = [r[name] for r in rows]
            numbers = None if name in categorical else _floats(values)
            if numbers is not None:
                arr = np.asarray(numbers)
                columns.append({"name": name, "kind": "number", "mean": float(arr.mean()),
                                "std": float(arr.std()) if arr.std() > 0 else 1.0})
            else:
                columns.append({"name": name, "kind": "category", "levels": sorted(set(values))})
        return cls(columns)

    @classmethod
    def from_manifest(cls, specs: Sequence[Any]) -> CovariateCoder:
        return cls([s if isinstance(s, dict) else s.model_dump(exclude_none=True) for s in specs])

    def to_manifest(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.columns]

    def encode(self, values: Mapping[str, Any], where: str) -> np.ndarray:
        """``z`` for one patient.

        Raises:
            DataError: a covariate missing, a number that is not one (or not finite), or a
                category level not seen in training; the message names ``where`` and the covariate.
        """
        out: list[float] = []
        for c in self.columns:
            name = c["name"]
            if name not in values or values[name] is None or str(values[name]).strip() == "":
                raise DataError(f"{where}: covariate {name!r} is missing (the model needs "
                                f"{', '.join(self.names)})")
            v = values[name]
            if c["kind"] == "number":
                try:
                    x = float(v)
                except (TypeError, ValueError):
                    raise DataError(f"{where}: covariate {name!r} must be a number; got {v!r}") from None
                if not math.isfinite(x):
                    raise DataError(f"{where}: covariate {name!r} must be finite; got {v!r}")
                out.append((x - c["mean"]) / c["std"])
            else:
                text = str(v).strip()
                if text not in c["levels"]:
                    raise DataError(f"{where}: covariate {name!r} is {text!r}, which the model has not seen; "
                                    f"it knows {', '.join(c['levels'])}")
                out.extend(1.0 if text == level else 0.0 for level in c["levels"])
        return np.asarray(out, dtype=np.float32)


def _floats(values: Sequence[str]) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(x) for x in out) else None
