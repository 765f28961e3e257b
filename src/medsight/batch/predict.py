"""The predicting side of a batch, shared by the file and the database modes: one predictor per
process, and a chunk of inputs turned into result rows.

An input is a path or a DICOMweb URL (:mod:`medsight.batch.dicomweb`); a chunk's DICOMweb
inputs are fetched into a temporary folder just before they are predicted and deleted after.
"""

from __future__ import annotations

import resource
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["make_predictor", "predict_rows", "chunks", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """The largest resident memory of this process or of any of its finished children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)  # Linux: KiB


def make_predictor(model: str, backend: str, accept_modalities: Sequence[str] | None, threads: int | None,
                   loaded: Any = None) -> Any:
    """A :class:`~medsight.engine.predictor.Predictor` for ``model`` (``threads``: torch's, or as it is;
    ``loaded``: the :class:`~medsight.models.saved.SavedModel` already loaded from ``model``, used as it is)."""
    from medsight.engine.predictor import Predictor
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    if threads:
        import torch

        torch.set_num_threads(threads)
    m = loaded if loaded is not None else load_model(model, backend=backend)
    return Predictor(m, get_task(m.task), accept_modalities=accept_modalities)


def predict_rows(predictor: Any, chunk: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    """Each input's result row, ``{"index": i, ..., "input": name, "ok": bool}`` (the result's
    JSON, or its error), in the chunk's order."""
    from medsight.batch.dicomweb import fetch_inputs, is_dicomweb
    from medsight.tasks.writers import write

    names = [name for _, name in chunk]
    with tempfile.TemporaryDirectory(prefix="medsight-batch-") as tmp:
        if any(is_dicomweb(n) for n in names):
            paths, errors = fetch_inputs(names, tmp)
        else:
            paths, errors = names, {}
        fetched = [k for k, p in enumerate(paths) if k not in errors]
        results = dict(zip(fetched, predictor.predict([paths[k] for k in fetched])))
    rows = []
    for k, (i, name) in enumerate(chunk):
        if k in errors:
            rows.append({"index": i, "error": errors[k], "input": name, "ok": False})
        else:
            r = results[k]
            rows.append({"index": i, **write(r, "json"), "input": name, "ok": bool(r.ok)})
    return rows


def chunks(todo: Sequence[int], names: Sequence[str], size: int) -> Iterator[list[tuple[int, str]]]:
    """``todo``'s indices with their names, ``size`` at a time."""
    for start in range(0, len(todo), size):
        yield [(i, names[i]) for i in todo[start:start + size]]
