"""Writers of results, registered by (result type, format): the one output path.

The CLI, the Python API and the service turn results into JSON, CSV rows, database rows,
NIfTI masks and DICOM SEG / SR through these writers and nothing else, so none of them asks
what kind of result it holds. A writer registered for :class:`~medsight.tasks.results.Result`
serves every result type; one registered for a subclass serves that type (the most derived
registration wins, as method lookup does). A format a type has no writer for is simply not
produced for it (:func:`writer_for` returns None).

=========== ================================================ ===============================
format      call                                             returns
=========== ================================================ ===============================
``json``    ``w(result)``                                    the JSON-ready dict
``csv``     ``w(result)``                                    one CSV row (column → value);
                                                             ``write_csv`` writes every row
                                                             of ``result.csv_rows()``
``db``      ``w(result)``                                    the service's result columns
                                                             (``label``, ``score``,
                                                             ``threshold``, ``positive``) and
                                                             ``outputs``
``sr``      ``w(result, sources, algorithm=..., ...)``       a DICOM SR of the findings, or None
``nifti``   ``w(result, path)``                              the NIfTI mask written, or None
``seg``     ``w(result, sources=None, algorithm=None, ...)`` a DICOM SEG of the mask, or None
``sc``      ``w(result, sources=None, algorithm=None,        a DICOM Secondary Capture of an
            overlay=)``                                      overlay (the given one, else the
                                                             result's ``overlay`` artifact, on
                                                             the source of the slice it shows),
                                                             or None
``png``     ``w(result, path)``                              the result's ``overlay`` artifact
                                                             written as PNG, or None
``crops``   ``w(result, folder, stem)``                      each ``crop`` artifact written as
                                                             ``<stem>_<label>.png`` (a nodule:
                                                             ``<stem>_nodule1.png``); the paths
=========== ================================================ ===============================

Example:
    >>> rows = [writer_for(r, "csv")(r) for r in results]                 # doctest: +SKIP
    >>> OutputFolder("out").write(result)       # NIfTI mask (+ DICOM SEG) of a segmentation  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from medsight.errors import WriteError
from medsight.tasks.results import ClassificationResult, Finding, Result, SegmentationResult

__all__ = ["register_writer", "writer_for", "list_writers", "write", "write_csv", "findings_sr", "OutputFolder",
           "FILE_FORMATS", "crop_name"]

log = logging.getLogger(__name__)

Writer = Callable[..., Any]
#: format → a functools.singledispatch function whose registry holds the writers by result type
#: (it resolves a subclass to the most derived registration, as method lookup does).
_FORMATS: dict[str, Any] = {}

#: The file formats :class:`OutputFolder` writes for a result, with their file-name suffix
#: (``crops`` writes one file per lesion, ``<case>_<label>.png``).
FILE_FORMATS = {"nifti": "_seg.nii.gz", "seg": "_seg.dcm", "png": "_overlay.png", "sc": "_overlay.dcm",
                "crops": "_<label>.png"}


def _no_writer(result: Any, *args: Any, **kwargs: Any) -> Any:  # the fallback of every format: no writer
    raise WriteError(f"{type(result).__name__} has no writer for this format")


def register_writer(result_type: type, fmt: str) -> Callable[[Writer], Writer]:
    """Register ``fn`` as the ``fmt`` writer of ``result_type`` (and its subclasses)."""

    def deco(fn: Writer) -> Writer:
        _FORMATS.setdefault(fmt, functools.singledispatch(_no_writer)).register(result_type)(fn)
        return fn

    return deco


def writer_for(result: Result | type, fmt: str) -> Writer | None:
    """The ``fmt`` writer of a result (or result type), or None when its type has none."""
    dispatcher = _FORMATS.get(fmt)
    if dispatcher is None:
        return None
    fn = dispatcher.dispatch(result if isinstance(result, type) else type(result))
    return None if fn is _no_writer else fn


def list_writers() -> list[tuple[type, str]]:
    """Every registered (result type, format)."""
    return [(t, fmt) for fmt, d in _FORMATS.items() for t in d.registry if t is not object]


def write(result: Result, fmt: str, *args: Any, **kwargs: Any) -> Any:
    """Run the ``fmt`` writer of ``result``.

    Raises:
        WriteError: its type has no ``fmt`` writer.
    """
    fn = writer_for(result, fmt)
    if fn is None:
        have = sorted(f for f in _FORMATS if writer_for(result, f) is not None)
        raise WriteError(f"expected a result with a {fmt!r} writer; {type(result).__name__} has none (it has "
                         f"{', '.join(have)})")
    return fn(result, *args, **kwargs)


# -- every result ---------------------------------------------------------------------------


@register_writer(Result, "json")
def _json(result: Result) -> dict[str, Any]:
    return result.to_dict()


@register_writer(Result, "csv")
def _csv_row(result: Result) -> dict[str, Any]:
    return result.csv_row()


@register_writer(Result, "db")
def _db_row(result: Result) -> dict[str, Any]:
    outputs = result.to_dict()
    outputs.pop("provenance", None)
    outputs.pop("input", None)
    return {"label": None, "score": None, "threshold": None, "positive": None, "outputs": outputs}


@register_writer(Result, "sr")
def _sr(result: Result, sources: Sequence[Any], **options: Any) -> Any | None:
    return findings_sr(result.findings(), sources, **options)


def _overlay(result: Result) -> Any | None:
    return next((a for a in result.artifacts() if a.kind == "overlay"), None)


def _slice_source(sources: Sequence[Any], artifact: Any, result: Result) -> Any:
    """The source dataset a picture of one slice was drawn on: the one whose SOPInstanceUID the
    result lists for that slice (its provenance's ``sop_uids``, in array order), else the
    slice-th of ``sources`` sorted as a series is, else the first."""
    from medsight.io.dicom_out import sort_like_series

    k = None if artifact is None else artifact.slice_index
    if k is None or len(sources) == 1:
        return sources[0]
    uids = list(getattr(getattr(result, "provenance", None), "sop_uids", None) or [])
    if 0 <= k < len(uids):
        match = [ds for ds in sources if str(ds.get("SOPInstanceUID", "")) == str(uids[k])]
        if match:
            return match[0]
    ordered = sort_like_series(sources)
    return ordered[k] if 0 <= k < len(ordered) else ordered[0]


@register_writer(Result, "sc")
def _sc(result: Result, sources: Sequence[Any] | None = None, *, algorithm: Any = None, overlay: Any = None,
        series_description: str | None = None, series_uid: str | None = None, sop_uid: str | None = None) -> Any | None:
    """A Secondary Capture of ``overlay`` (an ``(H, W, 3)`` uint8 picture drawn on ``sources[0]``:
    a heatmap, a mask's outline), else of the result's ``overlay`` artifact, on the source of the
    slice it shows (:attr:`~medsight.tasks.results.Artifact.slice_index`; with no ``sources``
    given, the artifact's ``source`` file is re-read); None without an overlay or a source.
    The one SC builder is :func:`medsight.io.dicom_out.build_sc` (the service's send jobs call it
    on the overlay file they stored)."""
    from medsight.io.dicom_out import Algorithm, build_sc

    artifact = None
    if overlay is None:
        artifact = _overlay(result)
        overlay = None if artifact is None else artifact.value
    if overlay is None:
        return None
    if not sources and artifact is not None and artifact.source:
        sources = [_header(artifact.source)]
    if not sources:
        return None
    source = _slice_source(sources, artifact, result)
    prov = getattr(result, "provenance", None)
    algo = algorithm or Algorithm(getattr(prov, "model", "MedSight"), getattr(prov, "model_version", "0"))
    return build_sc(source, overlay, algorithm=algo, series_uid=series_uid, sop_uid=sop_uid,
                    series_description=(series_description or f"MedSight {algo.name} overlay")[:64])


def _header(path: str) -> Any:
    """The header of one source DICOM file (no pixel data)."""
    from medsight.errors import MedSightError
    from medsight.io.dicom import read_dataset

    try:
        return read_dataset(Path(path), headers_only=True, force=True)
    except MedSightError as exc:
        raise WriteError(f"cannot re-read the overlay's source DICOM header: {exc}", path=path) from exc


def _write_png(rgb: Any, path: Path) -> Path:
    """An RGB picture as PNG, written atomically."""
    import numpy as np
    from PIL import Image as PILImage

    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}.{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"could not write the picture: {exc}", path=path) from exc
    return path


@register_writer(Result, "png")
def _png(result: Result, path: str | Path) -> Path | None:
    """The result's ``overlay`` artifact (the picture an SC also carries) as PNG; None without one.

    Raises:
        WriteError: the file cannot be written.
    """
    artifact = _overlay(result)
    return None if artifact is None else _write_png(artifact.value, Path(path))


def crop_name(label: str) -> str:
    """The file-name part of a crop's label: ``"nodule 1"`` → ``"nodule1"``."""
    import re

    return re.sub(r"[^A-Za-z0-9_-]+", "", label) or "lesion"


@register_writer(Result, "crops")
def _crops(result: Result, folder: str | Path, stem: str) -> list[Path]:
    """Each ``crop`` artifact (one lesion's picture) as ``<stem>_<label>.png`` in ``folder``
    (a nodule: ``<stem>_nodule1.png``); the paths written, none without crops.

    Raises:
        WriteError: a file cannot be written.
    """
    out = []
    for a in result.artifacts():
        if a.kind == "crop":
            label = next(iter(a.labels.values()), None) or "lesion"
            out.append(_write_png(a.value, Path(folder) / f"{stem}_{crop_name(label)}.png"))
    return out


def findings_sr(findings: Iterable[Finding], sources: Sequence[Any], *, algorithm: Any, title: str,
                series_uid: str | None = None, sop_uid: str | None = None) -> Any | None:
    """A DICOM SR (TID 1500) of ``findings`` on ``sources``, or None when there is no finding.

    Findings without a ``lesion_id`` make one measurement group (tracked as ``title``); those
    of each lesion make that lesion's group, tracked as e.g. ``"Nodule 1"``, located by its
    region's centre, with the finding type and site of its kind
    (:func:`medsight.io.dicom_out.codes.lesion_kind`, by its findings' names). Names with a
    standard concept (:data:`~medsight.io.dicom_out.codes.FINDING_CONCEPTS`: a nodule's
    diameter and volume) are coded with it.

    The one SR path: the ``sr`` writer of every result, and the service's send jobs (which
    read the findings back from their table) call it.
    """
    from medsight.io.dicom_out import Finding as SRFinding
    from medsight.io.dicom_out import Lesion, build_sr
    from medsight.io.dicom_out.codes import FINDING_CONCEPTS, lesion_kind

    def item(f: Finding) -> Any:
        return SRFinding(name=f.display_name[:64], value=f.value, unit=f.unit, text=f.text,
                         code=FINDING_CONCEPTS.get(f.name))

    plain: list[Any] = []
    by_lesion: dict[str, list[Finding]] = {}
    for f in findings:
        if f.lesion_id is None:
            plain.append(item(f))
        else:
            by_lesion.setdefault(str(f.lesion_id), []).append(f)
    lesions = []
    for lid, fs in by_lesion.items():
        kind = lesion_kind([f.name for f in fs])
        centre = next((f.region.center_mm for f in fs if f.region is not None), None)
        lesions.append(Lesion(identifier=f"{kind.label} {lid}", findings=[item(f) for f in fs], center_mm=centre,
                              finding_type=kind.finding_type, finding_site=kind.finding_site))
    if not plain and not lesions:
        return None
    return build_sr(sources, plain, lesions=lesions, algorithm=algorithm, title=title, series_uid=series_uid,
                    sop_uid=sop_uid)


def write_csv(results: Sequence[Result], path: str | Path, *, result_type: type[Result], model: Any) -> Path:
    """The CSV rows of every result (:meth:`~medsight.tasks.results.Result.csv_rows`: one per
    result, or one per finding of a detector): ``input``, the columns of ``result_type`` for
    ``model``, ``error``.

    Raises:
        WriteError: the file cannot be written.
    """
    path = Path(path)
    columns = ["input", *result_type.csv_columns(model), "error"]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
            w.writeheader()
            for r in results:
                # a type that gives several rows says so; else its (possibly registered) csv writer's row
                several = type(r).csv_rows is not Result.csv_rows
                w.writerows(r.csv_rows() if several else [write(r, "csv")])
    except OSError as exc:
        raise WriteError(f"could not write CSV: {exc}", path=path) from exc
    return path


# -- classification -------------------------------------------------------------------------


@register_writer(ClassificationResult, "db")
def _classification_db_row(result: ClassificationResult) -> dict[str, Any]:
    row = _db_row(result)
    score = result.score
    if score is None and result.probabilities:
        score = max(result.probabilities.values())
    row.update(label=result.label, score=score, threshold=result.threshold, positive=result.positive)
    return row


# -- segmentation ---------------------------------------------------------------------------


@register_writer(SegmentationResult, "nifti")
def _mask_nifti(result: SegmentationResult, path: str | Path) -> Path:
    """The one NIfTI mask writer: the label mask in the input's geometry, written atomically
    (a reader never sees half a file; a re-run replaces the file whole).

    Raises:
        WriteError: the file cannot be written.
    """
    from medsight.io.nifti import write_nifti

    path = Path(path)
    tmp = path.with_name(f".{os.getpid()}.{path.name}")  # keeps .nii.gz: nibabel compresses by suffix
    write_nifti(result.mask, tmp)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"could not store the mask: {exc}", path=path) from exc
    return path


@register_writer(SegmentationResult, "seg")
def _mask_seg(result: SegmentationResult, sources: Sequence[Any] | None = None, *, algorithm: Any = None,
              series_uid: str | None = None, sop_uid: str | None = None) -> Any | None:
    """The DICOM SEG of the mask (:func:`medsight.io.dicom_out.build_mask_seg`), or None when
    the mask is empty or, with no ``sources`` given, the input was not DICOM."""
    from medsight.io.dicom_out import Algorithm, build_mask_seg, source_datasets

    mask = result.mask
    if sources is None:
        if not (mask.meta.get("source_files") and mask.sop_uids):
            return None
        sources = source_datasets(mask)
    algo = algorithm or Algorithm(result.provenance.model, result.provenance.model_version)
    seg = build_mask_seg(sources, mask.array[0], result.labels, algorithm=algo,
                         source_uids=list(mask.sop_uids) or None, series_uid=series_uid, sop_uid=sop_uid)
    if seg is None:
        log.info("no structure found in %s; no DICOM SEG written", result.input)
    return seg


class OutputFolder:
    """Writes each result's files (:data:`FILE_FORMATS` its type has writers for) into one
    folder, named after the input: ``<case>_seg.nii.gz`` and ``<case>_seg.dcm`` (a mask),
    ``<case>_overlay.png`` and ``<case>_overlay.dcm`` (an overlay, as PNG and as a Secondary
    Capture when the input was DICOM), ``<case>_nodule1.png``... (a crop per lesion); a name
    used twice gets ``_2``, ``_3``...

    Args:
        folder: where the files go (created when needed).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._used: set[str] = set()

    def write(self, result: Result) -> Path | None:
        """Write ``result``'s files; returns the first one written (None: its type has none), and
        records it on the result (:meth:`~medsight.tasks.results.Result.record_output`).

        Raises:
            WriteError: a file cannot be written or built.
        """
        from medsight.data.segmentation import case_id
        from medsight.io.dicom_out import write_dicom

        formats = [f for f in FILE_FORMATS if writer_for(result, f) is not None]
        if not formats:
            return None
        stem = case_id(result.input) or "mask"
        name, i = stem, 1
        while name in self._used:
            i += 1
            name = f"{stem}_{i}"
        self._used.add(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        first = None
        for fmt in formats:
            path = self.folder / f"{name}{FILE_FORMATS[fmt]}"
            if fmt == "crops":
                crops = write(result, fmt, self.folder, name)
                written = crops[0] if crops else None
            elif fmt in ("nifti", "png"):
                written = write(result, fmt, path)
            else:  # a DICOM object
                ds = write(result, fmt)
                written = None if ds is None else write_dicom(ds, path)
            first = first or written
        if first is not None:
            result.record_output(str(first))
        return first
