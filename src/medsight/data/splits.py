"""Train/val/test splits of a list of :class:`~medsight.data.case.Case`, for every layout.

Where a case's split comes from, in order:

1. a **split file** (``data.split_file``): JSON ``{"train": [ids], "val": [ids], "test": [ids]}``;
   it replaces any other split, and a case it does not list is in no split;
2. the **source** itself: MedMNIST's official splits, ``train/``, ``val/``, ``test/`` class
   folders, or a CSV ``split`` column (read with :func:`split_value`);
3. a **seeded split** by ``val_fraction`` and ``test_fraction`` (:func:`seeded_split`).

The seeded split has two schemes, kept so that every shipped model's recorded split is what
this code gives again:

* ``"permutation"`` (segmentation): one ``numpy`` permutation seeded by ``split_seed``; the
  first ``round(test_fraction * n)`` cases are test, the next ``max(1, round(val_fraction * n))``
  val (none when there are 2 cases or fewer), the rest train.
* ``"sklearn"`` (classification): scikit-learn's ``train_test_split`` twice (test first, then
  val out of the rest), stratified by label when every class has at least 3 cases.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medsight.data.case import Case
from medsight.errors import DataError

__all__ = ["SPLITS", "split_value", "read_split_file", "apply_split_file", "seeded_split", "assign_splits",
           "split_ids"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

Scheme = Literal["permutation", "sklearn"]


def split_value(raw: str | None, *, where: str) -> str | None:
    """A split named in a source (a CSV ``split`` cell): ``train``, ``val``, ``test`` or None when empty.

    Raises:
        DataError: any other value, naming ``where`` (``file:line``).
    """
    split = (raw or "").strip().lower() or None
    if split is not None and split not in SPLITS:
        raise DataError(f"{where}: split must be train, val or test; got {split!r}")
    return split


def read_split_file(path: str | Path) -> dict[str, str]:
    """Case id → split from a JSON split file ``{"train": [ids], "val": [ids], "test": [ids]}``.

    Raises:
        DataError: unreadable or not of that shape, or a case listed in two splits.
    """
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the split file ({exc})") from None
    if not isinstance(spec, dict) or not any(s in spec for s in SPLITS):
        raise DataError(f"{path}: expected {{\"train\": [case ids], \"val\": [...], \"test\": [...]}}")
    out: dict[str, str] = {}
    for s in SPLITS:
        for cid in spec.get(s, []) or []:
            cid = str(cid)
            if cid in out:
                raise DataError(f"{path}: case {cid!r} is in both {out[cid]} and {s}")
            out[cid] = s
    return out


def apply_split_file(cases: Sequence[Case], path: str | Path, *, source: str) -> None:
    """Set every case's split from a split file; a case the file does not list gets None.

    Raises:
        DataError: see :func:`read_split_file`; or the file names a case that ``source`` lacks.
    """
    path = Path(path)
    wanted = read_split_file(path)
    by_id = {c.id: c for c in cases}
    for cid, s in wanted.items():
        if cid not in by_id:
            raise DataError(f"{path}: case {cid!r} of the {s} split is not in {source}")
    for c in cases:
        c.split = wanted.get(c.id)
    left = sum(1 for c in cases if c.split is None)
    if left:
        log.warning("%d case(s) of %s are in no split of %s and are not used", left, source, path.name)


def seeded_split(n: int, *, val_fraction: float, test_fraction: float, seed: int, scheme: Scheme = "permutation",
                 strata: Sequence[Hashable] | None = None) -> tuple[list[str], str]:
    """The split of each of ``n`` items, a function of the arguments alone.

    Args:
        n: how many items.
        val_fraction, test_fraction: shares of all items (``test_fraction`` may be 0).
        seed: the split seed.
        scheme: ``"permutation"`` or ``"sklearn"`` (module docstring).
        strata: per item, the value to stratify by (``"sklearn"`` only; ignored when a value
            occurs fewer than 3 times).

    Returns:
        ``(splits, kind)``: ``"train"``, ``"val"`` or ``"test"`` per item, and how it was made
        (``"permutation"``, ``"stratified"`` or ``"random"``).

    Raises:
        DataError: fractions outside [0, 1) or summing to 1 or more; strata of the wrong length.
    """
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(f"val_fraction and test_fraction must be in (0, 1) and [0, 1) with a sum below 1; got "
                        f"{val_fraction} and {test_fraction}")
    out = ["train"] * n
    if scheme == "permutation":
        order = np.random.default_rng(seed).permutation(n)
        n_test = int(round(test_fraction * n))
        n_val = max(1, int(round(val_fraction * n))) if n > 2 else 0
        for rank, i in enumerate(order):
            out[i] = "test" if rank < n_test else ("val" if rank < n_test + n_val else "train")
        return out, "permutation"
    if scheme != "sklearn":
        raise DataError(f"split scheme must be 'permutation' or 'sklearn'; got {scheme!r}")
    from sklearn.model_selection import train_test_split

    if strata is not None and len(strata) != n:
        raise DataError(f"strata must give one value per item ({n}); got {len(strata)}")
    strat = list(strata) if strata is not None else None
    if strat is not None and (not strat or min(Counter(strat).values()) < 3):
        strat = None  # too few of a class to stratify
    idx = np.arange(n)
    if test_fraction > 0:
        rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                      stratify=None if strat is None else [strat[i] for i in idx])
    else:
        rest, test = idx, np.array([], int)
    val_share = val_fraction / (1 - test_fraction)
    _, val = train_test_split(rest, test_size=val_share, random_state=seed,
                              stratify=None if strat is None else [strat[i] for i in rest])
    for i in val:
        out[int(i)] = "val"
    for i in test:
        out[int(i)] = "test"
    return out, "stratified" if strat is not None else "random"


def assign_splits(cases: Sequence[Case], *, split_file: str | Path | None = None, val_fraction: float = 0.15,
                  test_fraction: float = 0.15, seed: int = 0, scheme: Scheme = "permutation",
                  stratify: Callable[[Case], Hashable] | None = None, fill: Literal["unassigned", "none_assigned"]
                  = "unassigned", source: str = "the data") -> dict[str, Any] | None:
    """Give cases their splits (module docstring: split file, then the source's, then seeded).

    Args:
        cases: the cases, in a stable order (the seeded split depends on it).
        split_file: a JSON split file; when given it decides every case.
        val_fraction, test_fraction, seed, scheme: the seeded split (:func:`seeded_split`).
        stratify: a case's stratum for ``scheme="sklearn"`` (its label), or None.
        fill: which cases get a seeded split: ``"unassigned"``, every case the source left
            without one (classification); ``"none_assigned"``, every case but only when the
            source assigned none (segmentation: a CSV ``split`` column with gaps leaves them out).
        source: named in errors.

    Returns:
        What the seeded split was (``kind``, ``seed``, fractions), or None when none was made.
    """
    if split_file:
        apply_split_file(cases, split_file, source=source)
        return None
    todo = [c for c in cases if c.split is None]
    if not todo or (fill == "none_assigned" and len(todo) != len(cases)):
        return None
    strata = [stratify(c) for c in todo] if stratify is not None else None
    splits, kind = seeded_split(len(todo), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                                scheme=scheme, strata=strata)
    for c, s in zip(todo, splits):
        c.split = s
    return {"kind": kind, "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}


def split_ids(cases: Sequence[Case]) -> dict[str, list[str]]:
    """Split → the ids of its cases, in case order (what a saved model records)."""
    return {s: [c.id for c in cases if c.split == s] for s in SPLITS}
