"""DICOM series from a folder: group, sort along the slice normal, check, stack.

A folder is scanned once, reading headers only. Files are grouped by SeriesInstanceUID;
within a series, slices are sorted by the projection of ImagePositionPatient on the slice
normal (never by file name), their orientation and size are checked, duplicates and gaps are
reported, and the pixels are stacked into one pre-allocated volume, so reading a 300-slice
series needs little more memory than the volume itself.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import (
    AmbiguousSeriesError,
    ImageReadError,
    MedSightError,
    SeriesError,
    UnsafePathError,
    UnsupportedFormatError,
)
from medsight.io.dicom import dataset_to_image, patient_of, plane_geometry, read_dataset
from medsight.io.dicom_pixels import PIXEL_KEYWORDS, dataset_pixels
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_decoded_size, check_file_size
from medsight.io.registry import register_reader
from medsight.io.sniff import sniff_format

__all__ = ["SliceHeader", "SeriesInfo", "FolderScan", "scan_folder", "read_series", "read_dicom_folder"]

log = logging.getLogger(__name__)

_ORIENTATION_TOL = 1e-3  # difference in direction cosines tolerated within one series
_GAP_FACTOR = 1.5  # a step this many times the typical step means missing slices
_UNEVEN_TOL = 0.05  # relative variation in slice steps beyond which a series is not uniform
_UNEVEN_WARN = 0.005  # ... and beyond which it is worth a warning


@dataclass
class SliceHeader:
    """What one file contributes to a series, read without its pixel data."""

    path: Path
    series_uid: str
    sop_uid: str
    rows: int
    cols: int
    frames: int
    row_cosine: np.ndarray
    col_cosine: np.ndarray
    position: np.ndarray
    position_known: bool
    pixel_spacing: tuple[float, float]
    instance_number: int | None
    description: str
    modality: str
    pixel_spacing_known: bool = True


@dataclass
class SeriesInfo:
    """One series found in a folder, after checking."""

    uid: str
    description: str
    modality: str
    slices: list[SliceHeader]
    problems: list[str] = field(default_factory=list)  # reasons the series cannot be stacked as it is
    blocking: list[str] = field(default_factory=list)  # the problems that allow_gaps cannot fix
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # files dropped from it
    spacing: tuple[float, float, float] | None = None
    tolerated_gaps: list[str] = field(default_factory=list)  # gaps within max_slice_gap: filled when stacked

    def summary(self) -> dict[str, Any]:
        return {
            "series_uid": self.uid,
            "series_description": self.description,
            "modality": self.modality,
            "n_instances": len(self.slices),
            "problems": self.problems,
            "warnings": self.warnings,
            "tolerated_gaps": self.tolerated_gaps,
        }


@dataclass
class FolderScan:
    """Everything found in a folder: the series and the files skipped, with reasons."""

    root: Path
    series: list[SeriesInfo]
    skipped: list[dict[str, str]]

    def choose(self, series: str | int | None = None, rule: str = "only") -> SeriesInfo:
        """Pick one series.

        Args:
            series: a SeriesInstanceUID, a (case-insensitive) SeriesDescription, or an index
                into :attr:`series`.
            rule: when ``series`` is None: ``"only"`` (error if several), ``"largest"`` (most
                instances), or ``"first"``.
        """
        if not self.series:
            reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in self.skipped[:5])
            raise ImageReadError(
                "folder holds no readable DICOM image series" + (f" (skipped: {reasons})" if reasons else ""),
                path=self.root,
            )
        if series is not None:
            if isinstance(series, int) or (isinstance(series, str) and series.isdigit() and len(series) < 4):
                idx = int(series)
                if 0 <= idx < len(self.series):
                    return self.series[idx]
            for s in self.series:
                if series in (s.uid,) or str(series).lower() == s.description.lower():
                    return s
            raise AmbiguousSeriesError(f"no series matches {series!r}; found: {self._listing()}", path=self.root)
        if len(self.series) == 1 or rule == "first":
            return self.series[0]
        if rule == "largest":
            return max(self.series, key=lambda s: len(s.slices))
        raise AmbiguousSeriesError(
            f"folder holds {len(self.series)} series; choose one with series=UID, a description or an "
            f"index: {self._listing()}",
            path=self.root,
        )

    def _listing(self) -> str:
        return "; ".join(f"[{i}] {s.uid} {s.description!r} ({len(s.slices)} instances)"
                         for i, s in enumerate(self.series))


def _iter_files(root: Path, limits: ReadLimits):
    root_real = root.resolve()
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            count += 1
            if count > limits.max_files:
                raise ImageReadError(f"folder holds more than {limits.max_files} files", path=root)
            yield p, root_real


def _header(path: Path, root_real: Path, limits: ReadLimits) -> SliceHeader:
    if path.is_symlink() and not path.resolve().is_relative_to(root_real):
        raise UnsafePathError("symbolic link points outside the folder", path=path)
    size = check_file_size(path, limits)
    if size == 0:
        from medsight.errors import EmptyFileError

        raise EmptyFileError("file is empty (0 bytes)", path=path)
    with open(path, "rb") as f:
        head = f.read(1024)
    fmt = sniff_format(path, head)
    if fmt != "dicom":
        raise UnsupportedFormatError(f"not DICOM (content looks like {fmt or 'nothing known'})", path=path)
    ds = read_dataset(path, headers_only=True, force=head[128:132] != b"DICM")
    if not any(kw in ds for kw in PIXEL_KEYWORDS):
        from medsight.errors import MissingPixelDataError

        sop = ds.get("SOPClassUID")
        raise MissingPixelDataError(f"no pixel data (SOP class {getattr(sop, 'name', sop)})", path=path)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        from medsight.errors import PixelDataError

        raise PixelDataError(f"Rows/Columns missing or invalid ({exc})", path=path) from exc
    _check_pixel_length(ds, path)
    geo = plane_geometry(ds)
    inst = ds.get("InstanceNumber")
    try:
        inst = int(inst) if inst is not None and str(inst) != "" else None
    except (TypeError, ValueError):
        inst = None
    return SliceHeader(
        path=path, series_uid=str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)"),
        sop_uid=str(ds.get("SOPInstanceUID", "") or path.name), rows=rows, cols=cols, frames=frames,
        row_cosine=geo["row_cosine"], col_cosine=geo["col_cosine"], position=geo["position"],
        position_known=geo["position_known"], pixel_spacing=geo["pixel_spacing"], instance_number=inst,
        description=str(ds.get("SeriesDescription", "") or ""), modality=str(ds.get("Modality", "OT") or "OT"),
        pixel_spacing_known=geo["spacing_source"] is not None,
    )


def _check_pixel_length(ds, path: Path) -> None:
    """Refuse, from the header alone, native pixel data shorter than Rows x Columns x ... say."""
    from pydicom.dataelem import RawDataElement

    from medsight.errors import PixelDataError
    from medsight.io.dicom_pixels import expected_native_bytes

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in ds or (ts is not None and getattr(ts, "is_compressed", False)):
        return
    raw = ds.get_item("PixelData", keep_deferred=True)
    length = raw.length if isinstance(raw, RawDataElement) else len(ds.PixelData or b"")
    expected = expected_native_bytes(ds)
    if length < expected:
        raise PixelDataError(f"pixel data has {length:,} bytes; the header describes {expected:,} bytes", path=path)


def scan_folder(root: str | Path, *, limits: ReadLimits | None = None) -> FolderScan:
    """Read the headers of every file under ``root`` and group the DICOM images into series.

    Files that are not DICOM images, are damaged, or do not fit their series are listed in
    :attr:`FolderScan.skipped` (or :attr:`SeriesInfo.skipped`) with the reason; they never
    stop the rest of the folder from being read.
    """
    limits = limits or ReadLimits.from_env()
    root = Path(root)
    if not root.is_dir():
        raise ImageReadError("not a folder", path=root)
    groups: dict[str, list[SliceHeader]] = {}
    skipped: list[dict[str, str]] = []
    for path, root_real in _iter_files(root, limits):
        try:
            h = _header(path, root_real, limits)
        except MedSightError as exc:
            skipped.append({"file": str(path), "error": type(exc).__name__, "reason": _reason(exc)})
            continue
        groups.setdefault(h.series_uid, []).append(h)
    series = [_check_series(uid, headers, limits.max_slice_gap) for uid, headers in groups.items()]
    series.sort(key=lambda s: (s.description, s.uid))
    return FolderScan(root=root, series=series, skipped=skipped)


def _reason(exc: MedSightError) -> str:
    msg = str(exc)
    return msg.split(": ", 1)[1] if exc.path and msg.startswith(str(exc.path)) else msg


def _majority(headers: list[SliceHeader], key) -> tuple[Any, list[SliceHeader], list[SliceHeader]]:
    counts = Counter(key(h) for h in headers)
    best, _ = counts.most_common(1)[0]
    keep = [h for h in headers if key(h) == best]
    drop = [h for h in headers if key(h) != best]
    return best, keep, drop


def _check_series(uid: str, headers: list[SliceHeader], max_gap: float = 1.5) -> SeriesInfo:
    first = headers[0]
    info = SeriesInfo(uid=uid, description=first.description, modality=first.modality, slices=[])
    # size: the most common (rows, cols) wins; other files are reported, not stacked
    size, headers, off = _majority(headers, lambda h: (h.rows, h.cols))
    for h in off:
        info.skipped.append({"file": str(h.path), "error": "SeriesError",
                             "reason": f"size {h.rows}x{h.cols} differs from the series' {size[0]}x{size[1]}"})
    # orientation: the most common (rounded) orientation wins
    orient, headers, off = _majority(
        headers, lambda h: tuple(np.round(np.concatenate([h.row_cosine, h.col_cosine]) / _ORIENTATION_TOL).astype(int))
    )
    for h in off:
        info.skipped.append({"file": str(h.path), "error": "SeriesError",
                             "reason": "inconsistent orientation: ImageOrientationPatient "
                                       f"{np.round(np.concatenate([h.row_cosine, h.col_cosine]), 4).tolist()} differs "
                                       "from the rest of the series"})
    if len(headers) == 1 or any(h.frames > 1 for h in headers):
        info.slices = headers
        return info
    normal = np.cross(headers[0].row_cosine, headers[0].col_cosine)
    if not all(h.position_known for h in headers):
        msg = "some slices have no ImagePositionPatient, so they cannot be ordered in space"
        info.problems.append(msg)
        info.blocking.append(msg)
        info.slices = headers
        return info
    headers = sorted(headers, key=lambda h: (float(h.position @ normal), h.instance_number or 0))
    kept = [headers[0]]
    for h in headers[1:]:
        if abs(float((h.position - kept[-1].position) @ normal)) < 1e-3:
            what = "duplicate instance" if h.sop_uid == kept[-1].sop_uid else "duplicate slice position"
            info.skipped.append({"file": str(h.path), "error": "SeriesError",
                                 "reason": f"{what} at {float(h.position @ normal):.3f} mm along the normal"})
            continue
        kept.append(h)
    info.slices = kept
    proj = np.array([float(h.position @ normal) for h in kept])
    steps = np.diff(proj)
    if len(steps):
        typical = float(np.median(steps))
        for a, b, step in zip(proj[:-1], proj[1:], steps):
            if step > _GAP_FACTOR * typical:
                missing = int(round(step / typical)) - 1
                gap = (f"missing slice(s): a gap of {step:.3f} mm between positions {a:.3f} and {b:.3f} mm "
                       f"along the normal, where slices are {typical:.3f} mm apart (about {missing} missing)")
                if step <= max_gap * typical:
                    info.tolerated_gaps.append(gap)
                else:
                    info.problems.append(f"{gap}; the largest gap stacked is {max_gap:g}x the step "
                                         "(max_slice_gap, MEDSIGHT_MAX_SLICE_GAP)")
        regular = steps[steps <= _GAP_FACTOR * typical]
        spread = float(regular.max() - regular.min()) if len(regular) else 0.0
        if spread > _UNEVEN_TOL * typical:
            info.problems.append(f"slice spacing is not uniform: steps from {regular.min():.3f} to "
                                 f"{regular.max():.3f} mm along the normal")
        elif spread > _UNEVEN_WARN * typical:
            info.warnings.append(f"slice steps vary slightly, from {regular.min():.3f} to {regular.max():.3f} mm")
        in_plane = np.array([h.pixel_spacing for h in kept])
        if np.ptp(in_plane, axis=0).max() > 1e-4:
            msg = ("pixel spacing differs between slices: "
                   f"{sorted({tuple(round(v, 4) for v in p) for p in in_plane.tolist()})}")
            info.problems.append(msg)
            info.blocking.append(msg)
        info.spacing = (typical if info.problems or info.tolerated_gaps else float(np.mean(steps)),
                        *kept[0].pixel_spacing)
    return info


def _slice_plan(info: SeriesInfo) -> tuple[list[SliceHeader | None], float]:
    """Slices in stacking order, with None where a missing slice is filled, and the step in mm."""
    normal = np.cross(info.slices[0].row_cosine, info.slices[0].col_cosine)
    proj = np.array([float(h.position @ normal) for h in info.slices])
    steps = np.diff(proj)
    typical = float(np.median(steps))
    plan: list[SliceHeader | None] = [info.slices[0]]
    for h, step in zip(info.slices[1:], steps):
        if step > _GAP_FACTOR * typical:
            plan.extend([None] * (int(round(step / typical)) - 1))
        plan.append(h)
    return plan, float((proj[-1] - proj[0]) / (len(plan) - 1))


def read_series(info: SeriesInfo, *, limits: ReadLimits | None = None, allow_gaps: bool = False,
                source: str | None = None) -> Image:
    """Stack a checked series into one Image of shape ``(1, slices, rows, cols)``.

    Slices are stacked in the order :func:`scan_folder` sorted them (ascending along the slice
    normal), into one pre-allocated array, so the peak memory is about the volume's own size.

    Args:
        info: a series from :func:`scan_folder`.
        limits: caps on the decoded size.
        allow_gaps: stack a series with missing slices (of any size) or uneven steps anyway. Gaps up
            to ``limits.max_slice_gap`` times the median step, as judged by :func:`scan_folder`, are
            stacked without it, the same way, with a warning. Missing slices
            are filled with the volume's lowest value at their expected positions, listed in
            ``meta["filled_slices"]`` (their ``sop_uids`` and ``meta["source_files"]`` entries
            are ``""``); uneven steps are stacked at their mean step, with a warning.
        source: what to name the image's source (the folder).

    Raises:
        SeriesError: the series has problems (gaps over ``max_slice_gap``, uneven steps) and ``allow_gaps``
            is False,
            or problems that no option fixes (unknown positions, mixed pixel spacing, colour).
    """
    limits = limits or ReadLimits.from_env()
    if info.blocking or (info.problems and not allow_gaps):
        raise SeriesError(f"series {info.uid} cannot be stacked: " + "; ".join(info.problems), path=source)
    if not info.slices:
        raise SeriesError(f"series {info.uid} has no usable slices", path=source)
    if len(info.slices) == 1 or any(h.frames > 1 for h in info.slices):
        if len(info.slices) > 1:
            raise SeriesError(f"series {info.uid} mixes {len(info.slices)} multi-frame objects; read them one by one",
                              path=source)
        h = info.slices[0]
        image = dataset_to_image(read_dataset(h.path), path=h.path, limits=limits)
        image.meta["skipped_files"] = info.skipped
        return image
    first = info.slices[0]
    fill = bool(info.problems or info.tolerated_gaps)
    plan, step = _slice_plan(info) if fill else (list(info.slices), info.spacing[0])  # type: ignore[index]
    n = len(plan)
    check_decoded_size((n, first.rows, first.cols), 1, limits, source)  # again with the real dtype below
    volume: np.ndarray | None = None
    meta: dict[str, Any] = {}
    ds0 = None
    for k, h in enumerate(plan):
        if h is None:
            continue
        ds = read_dataset(h.path)
        pixels, pinfo = dataset_pixels(ds, path=h.path, limits=limits)
        if pixels.ndim != 3 or pixels.shape[1:] != (first.rows, first.cols):
            raise SeriesError(f"series {info.uid}: expected grayscale {first.rows}x{first.cols} slices; this one "
                              f"decodes to {pixels.shape[1:]}", path=h.path)
        if volume is None:
            ds0, meta = ds, pinfo
            dtype = np.float32 if pixels.dtype.kind == "f" else pixels.dtype
            check_decoded_size((n, first.rows, first.cols), np.dtype(dtype).itemsize, limits, source)
            volume = np.empty((n, first.rows, first.cols), dtype=dtype)
        elif not np.can_cast(pixels.dtype, volume.dtype, "safe"):
            wider = np.promote_types(pixels.dtype, volume.dtype)
            check_decoded_size(volume.shape, 4 if wider.kind == "f" or wider.itemsize > 4 else wider.itemsize, limits,
                               source)
            volume = volume.astype(np.float32 if wider.kind == "f" or wider.itemsize > 4 else wider)  # widen once
        volume[k] = pixels[0]
    assert volume is not None and ds0 is not None
    filled = [k for k, h in enumerate(plan) if h is None]
    base = dataset_to_image_meta(ds0, meta)
    base["warnings"] = list(info.warnings)
    if filled:
        present = [k for k in range(n) if plan[k] is not None]
        volume[filled] = volume[present].min()
        base["filled_slices"] = filled
        base["warnings"].append(f"{len(filled)} missing slice(s) filled with the lowest value at indices {filled}")
    if info.problems:
        base["warnings"] += [f"stacked despite: {p}" for p in info.problems]
    base["warnings"] += [f"stacked within max_slice_gap: {g}" for g in info.tolerated_gaps]
    if filled:
        log.warning("series %s stacked with %d missing slice(s) filled; meta['warnings'] says where", info.uid,
                    len(filled))
    base["spacing_known"] = all(h.pixel_spacing_known for h in info.slices)
    base["skipped_files"] = info.skipped
    base["source_files"] = ["" if h is None else str(h.path) for h in plan]  # array order, for dicom_out
    if meta.get("rescale") or meta.get("modality_lut"):
        base["units"] = meta.get("units", base.get("units"))
    normal = np.cross(first.row_cosine, first.col_cosine)
    direction = np.column_stack([normal, first.col_cosine, first.row_cosine])
    return Image(
        array=volume[None], spacing=(step, *first.pixel_spacing), origin=tuple(first.position), direction=direction,
        modality=info.modality, study_uid=_s(ds0.get("StudyInstanceUID")), series_uid=info.uid,
        sop_uids=tuple("" if h is None else h.sop_uid for h in plan),
        frame_of_reference_uid=_s(ds0.get("FrameOfReferenceUID")), patient=patient_of(ds0), source=source, meta=base,
    )


def dataset_to_image_meta(ds, pixel_info: dict[str, Any]) -> dict[str, Any]:
    from medsight.io.dicom import _common_meta

    meta = _common_meta(ds)
    meta.update(pixel_info)
    meta.pop("rescale", None)
    return meta


def _s(v: Any) -> str | None:
    return None if v is None or str(v) == "" else str(v)


@register_reader("folder", folder=True)
def read_dicom_folder(path: Path, *, limits: ReadLimits, series: str | int | None = None, rule: str = "only",
                      allow_gaps: bool = False, **_: object) -> Image:
    """Read the DICOM series in a folder (choose with ``series=`` when there are several)."""
    scan = scan_folder(path, limits=limits)
    chosen = scan.choose(series, rule)
    try:
        image = read_series(chosen, limits=limits, allow_gaps=allow_gaps, source=str(path))
    except SeriesError as exc:
        skipped = scan.skipped + chosen.skipped
        if not skipped:
            raise
        detail = "; ".join(f"{Path(s['file']).name}: {s['reason']}" for s in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise SeriesError(f"{_reason(exc)} (files skipped in this folder: {detail}{more})", path=path) from exc
    image.meta["skipped_files"] = scan.skipped + chosen.skipped
    if image.meta["skipped_files"]:
        log.warning("%d file(s) in the folder were skipped; meta['skipped_files'] says why",
                    len(image.meta["skipped_files"]))
    return image
