"""Batch inference over an archive: streamed, resumable, parallel (``medsight batch``).

The inputs (files, folders, or the ``path`` column of a CSV manifest) are listed once; each is
read only when its chunk is predicted, and its result is appended to a JSON-lines file as soon
as it exists, so memory does not grow with the archive. Each line is one result,
``{"index": i, "input": ..., ...}`` (``index``: the input's position in the list; the rest is
the result's JSON, or its error).

**Resumable.** A rerun with the same inputs and output file reads the lines already written and
predicts only the indices missing. A run killed mid-line (SIGKILL, power loss) leaves a torn
last line: it is cut off and that input is predicted again, so every input ends with exactly
one line. Lines are flushed and fsynced chunk by chunk.

**Parallel.** ``workers > 1`` runs that many processes (``spawn``; each loads the model once,
one torch thread each); the parent writes every line, so the file has one writer. At most
``2 * workers`` chunks are in flight, which bounds memory. Across machines, run one batch per
machine over its own part of the list (``--part K/N``), each with its own output file.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medsight.batch.predict import chunks, make_predictor, peak_rss_mb, predict_rows
from medsight.errors import ConfigError, DataError

__all__ = ["BatchSummary", "run_batch", "read_done", "inputs_from_manifest", "list_inputs"]

log = logging.getLogger(__name__)


@dataclass
class BatchSummary:
    """What a batch run did.

    Attributes:
        n: inputs in the list (after ``part``).
        already_done: inputs whose line was in the output file before this run.
        predicted: inputs predicted by this run.
        failed: of those, the ones whose line is an error.
        failed_earlier: the error lines already in the file (not retried: delete them to retry).
        repaired: whether a torn last line was cut off.
        seconds: wall time of this run's predictions.
        peak_rss_mb: the largest resident memory of this process (and of its workers).
    """

    n: int
    already_done: int
    predicted: int
    failed: int
    failed_earlier: int
    repaired: bool
    seconds: float
    peak_rss_mb: float

    @property
    def images_per_second(self) -> float:
        return round(self.predicted / self.seconds, 1) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": self.images_per_second}


def inputs_from_manifest(path: str | Path) -> list[str]:
    """The ``path`` column of a CSV manifest, relative paths taken beside the manifest.

    Raises:
        DataError: the file cannot be read, has no ``path`` column, or lists nothing.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                raise DataError(f"{path}: a batch manifest needs a 'path' column; it has "
                                f"{', '.join(reader.fieldnames or []) or 'none'}")
            rows = [r["path"].strip() for r in reader if (r.get("path") or "").strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the manifest: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: the manifest lists no input")
    return [p if Path(p).is_absolute() or "://" in p else str(path.parent / p) for p in rows]


def list_inputs(expand: Callable[[Sequence[str]], list[str]], inputs: Sequence[str], *,
                manifest: str | Path | None = None, part: tuple[int, int] | None = None,
                extra: Sequence[str] = ()) -> list[str]:
    """The full input list: ``inputs`` expanded (folders into what they hold), then the manifest's
    paths, then ``extra`` (a DICOMweb query's inputs); with ``part=(k, n)``, every n-th input from
    the k-th (1-based), for one of n machines."""
    names = list(expand(list(inputs))) if inputs else []
    if manifest is not None:
        names += inputs_from_manifest(manifest)
    names += list(extra)
    if not names:
        raise ConfigError("no input: give files, folders, --manifest CSV or --qido URL (that matches something)")
    if part is not None:
        k, n = part
        if not 1 <= k <= n:
            raise ConfigError(f"--part must be K/N with 1 <= K <= N; got {k}/{n}")
        names = names[k - 1::n]
    return names


def read_done(out: Path, names: Sequence[str]) -> tuple[set[int], int, bool]:
    """The indices an output file already holds, the failures among them, and whether a torn
    last line was cut off (the file is truncated to its last whole line).

    Raises:
        DataError: a line that is not a result of this input list (another list's file).
    """
    if not out.exists():
        return set(), 0, False
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    repaired = end < len(data)
    if repaired:  # a line the last run did not finish writing
        with out.open("r+b") as f:
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        log.warning("%s: cut off a torn last line (%d bytes); that input is predicted again", out, len(data) - end)
    done: set[int] = set()
    failed = 0
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            i = int(row["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{out}: line {n} is not a batch result ({exc}); give another --out") from exc
        if not 0 <= i < len(names) or row.get("input") != names[i]:
            raise DataError(f"{out}: line {n} is input {i} {row.get('input')!r}, which is not this run's input {i}: "
                            f"the file belongs to another input list; give another --out")
        if i in done:
            raise DataError(f"{out}: input {i} has two lines; the file was written by two runs at once")
        done.add(i)
        failed += not row.get("ok", True)
    return done, failed, repaired


# -- the predicting side (in this process, or in each worker) ---------------------------------
_PREDICTOR: Any = None


def _init_worker(model: str, backend: str, accept_modalities: Sequence[str] | None) -> None:
    global _PREDICTOR
    _PREDICTOR = make_predictor(model, backend, accept_modalities, threads=1)


def _lines(predictor: Any, chunk: Sequence[tuple[int, str]]) -> list[tuple[str, bool]]:
    """Each input's JSON line and whether it succeeded."""
    return [(json.dumps(row) + "\n", row["ok"]) for row in predict_rows(predictor, chunk)]


def _worker_lines(chunk: Sequence[tuple[int, str]]) -> list[tuple[str, bool]]:
    return _lines(_PREDICTOR, chunk)


def run_batch(model: str, names: Sequence[str], out: str | Path, *, workers: int = 1, chunk: int | None = None,
              backend: str = "torch", accept_modalities: Sequence[str] | None = None,
              progress: Callable[[int], None] | None = None, loaded: Any = None) -> BatchSummary:
    """Predict every input of ``names`` not yet in ``out`` and append its line (see the module).

    Args:
        model: a shipped model's name or a saved-model folder (each worker loads it).
        names: the inputs, in a fixed order (:func:`list_inputs`); the same list on a rerun.
        out: the JSON-lines file (made, or resumed).
        workers: processes that predict (1: this one).
        chunk: inputs per chunk (default: 64 for a 2D model, 1 for a 3D one).
        progress: called with a number of inputs done: first those already in ``out`` (when
            there are any), then each chunk's.
        loaded: the :class:`~medsight.models.saved.SavedModel` the caller already loaded from
            ``model`` (with ``backend``): this process predicts with it instead of loading it again.

    Raises:
        DataError: ``out`` holds lines of another input list.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done, failed_before, repaired = read_done(out, names)
    todo = [i for i in range(len(names)) if i not in done]
    if done and progress is not None:
        progress(len(done))
    t0 = time.perf_counter()
    failed = 0
    if todo:
        local = make_predictor(model, backend, accept_modalities, threads=None, loaded=loaded)
        size = chunk or local.chunk
        with out.open("a", encoding="utf-8") as f:
            def emit(lines: list[tuple[str, bool]]) -> None:
                nonlocal failed
                f.write("".join(line for line, _ in lines))
                f.flush()
                os.fsync(f.fileno())
                failed += sum(1 for _, ok in lines if not ok)
                if progress is not None:
                    progress(len(lines))

            if workers <= 1:
                for c in chunks(todo, names, size):
                    emit(_lines(local, c))
            else:
                del local  # each worker loads its own
                _run_parallel(model, backend, accept_modalities, workers, chunks(todo, names, size), emit)
    seconds = round(time.perf_counter() - t0, 3)
    return BatchSummary(n=len(names), already_done=len(done), predicted=len(todo), failed=failed,
                        failed_earlier=failed_before, repaired=repaired, seconds=seconds, peak_rss_mb=peak_rss_mb())


def _run_parallel(model: str, backend: str, accept_modalities: Sequence[str] | None, workers: int,
                  chunks: Iterator[list[tuple[int, str]]], emit: Callable[[list[tuple[str, bool]]], None]) -> None:
    import multiprocessing as mp

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(model, backend, list(accept_modalities or []))) as pool:
        pending: set[Future] = set()
        for c in chunks:
            pending.add(pool.submit(_worker_lines, c))
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    emit(fut.result())
        for fut in pending:
            emit(fut.result())
