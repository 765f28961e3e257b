"""Preprocessed cases for training, held in memory or streamed from disk.

Training reads each case, preprocesses it (resampling, normalisation) and draws patches from the
result. :class:`PreparedCases` gives the preprocessed arrays of a list of
:class:`~medsight.data.case.Case` as two sequences (``images``, ``masks``), in one of three
ways, chosen by ``data.cache``:

* ``memory`` (default): every case is prepared once and held in memory, as MedSight always did;
  fastest, and needs the whole preprocessed split in RAM.
* ``disk``: every case is prepared once and written as two ``.npy`` files (NumPy's format, read
  with ``allow_pickle=False``: nothing executable is ever loaded) under the cache folder; items
  are read back on demand, so memory does not grow with the number of cases. A file is named by a
  SHA-256 of the preprocessing spec, the MedSight version, the case id and its files' paths,
  sizes and modification times, so a changed spec or a changed file never reuses a stale array,
  and a second run with the same spec reuses the first run's files.
* ``none``: a case is read and prepared each time it is used (nothing is stored).

The cache folder resolves as the ``cache_dir`` argument (``data.cache_dir``), then
``MEDSIGHT_CACHE_DIR``, then ``~/.cache/medsight/cases``.

Segmentation training first reads and checks each case once with
:func:`medsight.data.segmentation.check_cases` (bad cases are listed, never fatal; with
``keep=True`` the returned cases hold their image and mask in memory, otherwise only paths).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medsight.data.case import Case
from medsight.errors import DataError

__all__ = ["PreparedCases", "resolve_cache_dir", "CACHE_MODES"]

log = logging.getLogger(__name__)

CacheMode = Literal["memory", "disk", "none"]
CACHE_MODES = ("memory", "disk", "none")
_FORMAT = 1  # bump when what a cache file holds changes


def resolve_cache_dir(explicit: str | Path | None = None) -> Path:
    """The folder for preprocessed cases: ``explicit``, else ``MEDSIGHT_CACHE_DIR``, else
    ``~/.cache/medsight/cases``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MEDSIGHT_CACHE_DIR", "").strip()
    return Path(env) if env else Path.home() / ".cache" / "medsight" / "cases"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medsight")
    except PackageNotFoundError:
        return "unknown"


def _file_facts(ref: Any) -> list[Any]:
    if ref is None:
        return [None]
    if not isinstance(ref, str):  # held in memory: its content (and geometry) decides
        arr = np.ascontiguousarray(getattr(ref, "array", ref))
        geometry = [getattr(ref, k, None) for k in ("spacing", "origin")]
        return ["memory", str(arr.dtype), list(arr.shape), hashlib.sha256(arr.tobytes()).hexdigest(), geometry]
    p = Path(ref)
    try:
        st = p.stat()
    except OSError:
        return [ref, None, None]
    if p.is_dir():  # a DICOM series: its files' sizes and times
        files = sorted(f for f in p.rglob("*") if f.is_file())
        digest = hashlib.sha256("\n".join(f"{f.relative_to(p)}\t{f.stat().st_size}\t{f.stat().st_mtime_ns}"
                                          for f in files).encode()).hexdigest()
        return [str(p.resolve()), "dir", digest]
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


class PreparedCases:
    """The preprocessed arrays of cases, in memory, on disk or computed on demand (module docstring).

    Args:
        cases: the cases, in order.
        prepare: ``case -> (image, mask)``: ``(C, *spatial)`` float32 and ``(*spatial)`` integers.
        spec: what ``prepare`` does, JSON-serialisable (the preprocessing spec, label values);
            part of every disk cache key.
        cache: ``"memory"``, ``"disk"`` or ``"none"``.
        cache_dir: the disk cache folder (see :func:`resolve_cache_dir`).

    Attributes:
        images, masks: sequences over the cases (``len``, indexing); in memory mode plain lists.
        prepared: how many times ``prepare`` ran; ``hits``: disk arrays reused from an earlier run.

    Raises:
        DataError: an unknown cache mode, or a disk cache folder that cannot be written.
    """

    def __init__(self, cases: Sequence[Case], prepare: Callable[[Case], tuple[np.ndarray, np.ndarray]], *,
                 spec: Mapping[str, Any], cache: CacheMode = "memory", cache_dir: str | Path | None = None) -> None:
        if cache not in CACHE_MODES:
            raise DataError(f"data.cache must be one of {', '.join(CACHE_MODES)}; got {cache!r}")
        self.cases = list(cases)
        self._prepare = prepare
        self.spec = json.loads(json.dumps(spec, sort_keys=True, default=str))
        self.mode = cache
        self.prepared = 0
        self.hits = 0
        self._last: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None
        self._memory: list[tuple[np.ndarray, np.ndarray]] | None = None
        self.folder: Path | None = None
        self._keys: list[str] = []
        if cache == "memory":
            self._memory = [self._run(c) for c in self.cases]
            self.images: Sequence[np.ndarray] = [x for x, _ in self._memory]
            self.masks: Sequence[np.ndarray] = [y for _, y in self._memory]
            return
        if cache == "disk":
            self._keys = [self.key(i) for i in range(len(self.cases))]  # once: a DICOM folder is listed once
            self.folder = resolve_cache_dir(cache_dir)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"cannot create the case cache folder {self.folder} ({exc}); set data.cache_dir or "
                                "MEDSIGHT_CACHE_DIR to a writable folder, or use data.cache: memory") from None
            for i in range(len(self.cases)):  # prepare once, up front: workers only read
                if not all(p.is_file() for p in self._paths(i)):
                    self._store(i, self._run(self.cases[i]))
                else:
                    self.hits += 1
        self.images = _View(self, 0)
        self.masks = _View(self, 1)

    def __len__(self) -> int:
        return len(self.cases)

    def key(self, i: int) -> str:
        """The disk cache key of case ``i``: SHA-256 of the spec, the case id and its files."""
        c = self.cases[i]
        facts = {"format": _FORMAT, "medsight": _version(), "spec": self.spec, "id": c.id,
                 "images": {r: _file_facts(ref) for r, ref in sorted(c.images.items())},
                 "mask": _file_facts(c.mask)}
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()

    def _paths(self, i: int) -> tuple[Path, Path]:
        k = self._keys[i]
        base = Path(self.folder or ".") / k[:2]
        return base / f"{k}.image.npy", base / f"{k}.mask.npy"

    def _run(self, case: Case) -> tuple[np.ndarray, np.ndarray]:
        self.prepared += 1
        x, y = self._prepare(case)
        return np.ascontiguousarray(x), np.ascontiguousarray(y)

    def _store(self, i: int, pair: tuple[np.ndarray, np.ndarray]) -> None:
        for path, arr in zip(self._paths(i), pair):
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.save(f, arr, allow_pickle=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def item(self, i: int, part: int) -> np.ndarray:
        """Array ``part`` (0 image, 1 mask) of case ``i``."""
        if self._memory is not None:
            return self._memory[i][part]
        if self.mode == "disk":
            path = self._paths(i)[part]
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:  # removed or damaged since: prepare again
                log.warning("case cache file %s unusable (%s); preparing %s again", path.name, exc, self.cases[i].id)
                pair = self._run(self.cases[i])
                self._store(i, pair)
                return pair[part]
        if self._last is None or self._last[0] != i:  # image then mask of one case: prepared once
            self._last = (i, self._run(self.cases[i]))
        return self._last[1][part]


class _View(Sequence[np.ndarray]):
    """The images (or masks) of a :class:`PreparedCases`, read on demand."""

    def __init__(self, owner: PreparedCases, part: int) -> None:
        self.owner, self.part = owner, part

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        if not isinstance(i, int | np.integer):
            raise TypeError(f"index a case by an integer; got {type(i).__name__}")
        n = len(self.owner)
        if not -n <= i < n:
            raise IndexError(f"case {i} of {n}")
        return self.owner.item(int(i) % n, self.part)
