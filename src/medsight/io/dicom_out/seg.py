"""DICOM Segmentation (SEG) of a label mask, built with highdicom: the one SEG builder.

Slice order of a SEG mask:
    ``mask[k]`` belongs to the ``k``-th source after sorting the sources as
    :func:`medsight.io.series.read_series` sorts slices
    (:func:`~medsight.io.dicom_out.sources.sort_like_series`): ascending by the projection of
    ImagePositionPatient on the slice normal ``cross(row cosine, column cosine)`` of
    ImageOrientationPatient, ties broken by InstanceNumber. So a mask computed on
    ``medsight.io.read(folder)`` pairs with ``source_datasets(image)`` as it is, and the order
    in which callers pass the sources does not matter. A single multi-frame source pairs frame
    ``k`` with ``mask[k]`` in frame order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from medsight.errors import ShapeError, WriteError
from medsight.io.dicom_out.algorithm import Algorithm
from medsight.io.dicom_out.codes import coding_schemes, local_code, new_uid, segment_category
from medsight.io.dicom_out.sources import check_sources, sort_like_series

if TYPE_CHECKING:  # pragma: no cover
    import pydicom

__all__ = ["build_seg", "build_mask_seg", "display_colour"]


def display_colour(value: int):
    """The recommended display colour (CIELab) of label ``value``: the colour the dashboard's
    mask pictures give it (:mod:`medsight.palette`), so that a viewer shows each structure as
    MedSight's own pictures do."""
    import highdicom as hd

    from medsight.palette import label_rgb

    return hd.color.CIELabColor.from_rgb(*label_rgb(value))


def build_seg(sources: Sequence[pydicom.Dataset], mask: np.ndarray, labels: dict[int, str], *, algorithm: Algorithm,
              series_number: int = 903, series_uid: str | None = None, sop_uid: str | None = None,
              series_description: str | None = None) -> pydicom.Dataset:
    """A binary DICOM Segmentation of a label mask, one segment per label.

    Args:
        sources: the source slices (one study), in any order: they are sorted with
            :func:`sort_like_series`, and ``mask[k]`` belongs to the ``k``-th sorted source. A
            single multi-frame source pairs ``mask[k]`` with its frame ``k``.
        mask: ``(slices, rows, cols)`` integers (a ``(rows, cols)`` mask for one 2D source);
            0 is background, every other value must be a key of ``labels``.
        labels: label value → segment name, e.g. ``{1: "Anterior hippocampus"}``. Segments
            are numbered 1..N in ascending label value; the label value is kept in the
            segment's TrackingID (``"label <value>"``), and gives the segment's recommended
            display colour (:func:`display_colour`).
        algorithm: who made it (AlgorithmIdentificationSequence, manufacturer, versions).
        series_number: SeriesNumber of the new series.
        series_uid: SeriesInstanceUID to use; a fresh one by default.
        sop_uid: SOPInstanceUID to use; a fresh one by default.
        series_description: SeriesDescription (what a viewer names the series by); by default
            ``"MedSight <algorithm> segmentation"``.

    Raises:
        ShapeError: the mask's shape does not match the sources' slices, rows and columns.
        WriteError: sources from several studies, a label without a name, or no label at all.
    """
    import highdicom as hd

    srcs = check_sources(sources, "a SEG")
    if not labels:
        raise WriteError("a SEG needs at least one label name in `labels`; got none")
    if any(int(k) <= 0 for k in labels):
        raise WriteError(f"label values must be positive integers (0 is background); got {sorted(labels)}")
    mask = np.asarray(mask)
    if mask.dtype.kind not in "biu":
        if mask.dtype.kind == "f" and np.all(np.isfinite(mask)) and np.all(mask == np.round(mask)):
            mask = mask.astype(np.int64)
        else:
            raise ShapeError(f"expected an integer label mask; got dtype {mask.dtype}")
    multi_frame = len(srcs) == 1 and int(srcs[0].get("NumberOfFrames", 1) or 1) > 1
    if not multi_frame:
        srcs = sort_like_series(srcs)
    n_frames = int(srcs[0].get("NumberOfFrames", 1) or 1) if multi_frame else len(srcs)
    if mask.ndim == 2:
        mask = mask[None]
    rows, cols = int(srcs[0].Rows), int(srcs[0].Columns)
    if mask.shape != (n_frames, rows, cols):
        raise ShapeError(f"expected a mask of shape (slices, rows, cols) = ({n_frames}, {rows}, {cols}) matching the "
                         f"sources; got {mask.shape}")
    present = {int(v) for v in np.unique(mask)} - {0}
    unnamed = sorted(present - {int(k) for k in labels})
    if unnamed:
        raise WriteError(f"mask holds label value(s) {unnamed} that `labels` does not name; named: {sorted(labels)}")
    ordered = sorted((int(k), str(v)) for k, v in labels.items())
    lut = np.zeros(max(k for k, _ in ordered) + 1, dtype=np.uint16)
    for number, (value, _) in enumerate(ordered, start=1):
        lut[value] = number
    segment_numbers = lut[mask.astype(np.int64)] if ordered else mask
    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm.name[:64], version=algorithm.version[:64],
        family=hd.sr.CodedConcept("123109", "DCM", "Artificial Intelligence"))
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64], segmented_property_category=segment_category(name),
            segmented_property_type=local_code(name), algorithm_type="AUTOMATIC", algorithm_identification=algo,
            tracking_uid=str(hd.UID()), tracking_id=f"label {value}", display_color=display_colour(value))
        for number, (value, name) in enumerate(ordered, start=1)
    ]
    # one segment per frame: a one-hot (frames, rows, cols, segments) array keeps highdicom from guessing
    onehot = np.stack([segment_numbers == n for n in range(1, len(ordered) + 1)], axis=-1)
    try:
        seg = hd.seg.Segmentation(
            source_images=srcs, pixel_array=onehot, segmentation_type="BINARY", segment_descriptions=descriptions,
            series_instance_uid=new_uid(series_uid), series_number=series_number, sop_instance_uid=new_uid(sop_uid),
            instance_number=1, manufacturer=algorithm.manufacturer, manufacturer_model_name=algorithm.name[:64],
            software_versions=algorithm.version[:64], device_serial_number="0",
            omit_empty_frames=bool(present), coding_schemes=coding_schemes(),
            series_description=(series_description or f"MedSight {algorithm.name} segmentation")[:64],
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise WriteError(f"could not build the SEG from these sources: {exc}") from exc
    return seg


def build_mask_seg(sources: Sequence[pydicom.Dataset], mask: np.ndarray, labels: dict[int, str], *,
                   algorithm: Algorithm, source_uids: Sequence[str] | None = None, series_uid: str | None = None,
                   sop_uid: str | None = None) -> pydicom.Dataset | None:
    """The DICOM SEG of a task's label mask, or None when the mask is empty: the one path from
    a mask to a SEG, used by the CLI, the Python API and the service.

    Args:
        sources: the source datasets (headers are enough), in any order.
        mask: the label values on the source grid, ``(slices, rows, cols)`` or ``(rows, cols)``.
        labels: label value → structure name.
        algorithm: who made it.
        source_uids: the SOPInstanceUIDs of the sources in mask slice order, when known (a
            result records them): every one must be among ``sources``, one per slice, and the
            sources must sort into that order (see the module docstring), else no SEG is built
            rather than one that maps slices to the wrong images. Not checked for one
            multi-frame source.
        series_uid, sop_uid: the UIDs to use (fresh ones by default).

    Raises:
        WriteError: a source is missing or out of order, or highdicom refuses the sources.
        ShapeError: the mask does not match the sources.
    """
    from medsight.errors import MedSightError

    arr = np.asarray(mask)
    if not arr.any():
        return None
    if arr.ndim == 2:
        arr = arr[None]
    srcs = list(sources)
    multi_frame = len(srcs) == 1 and int(srcs[0].get("NumberOfFrames", 1) or 1) > 1
    if source_uids and not multi_frame:
        uids = [str(u) for u in source_uids]
        by_uid = {str(ds.SOPInstanceUID): ds for ds in srcs}
        missing = [u for u in uids if u not in by_uid]
        if missing or len(uids) != arr.shape[0]:
            raise WriteError(f"expected the {arr.shape[0]} source instance(s) of the mask; {len(missing)} of the "
                             f"{len(uids)} recorded are not given")
        srcs = [by_uid[u] for u in uids]
        if [str(ds.SOPInstanceUID) for ds in sort_like_series(srcs)] != uids:
            raise WriteError("the source instances do not sort into the mask's slice order; no SEG is built "
                             "rather than one that maps slices to the wrong images")
    try:
        return build_seg(srcs, arr, labels, algorithm=algorithm, series_uid=series_uid, sop_uid=sop_uid)
    except MedSightError:
        raise
    except Exception as exc:  # noqa: BLE001 - highdicom refuses a source it cannot reference
        raise WriteError(f"could not build a DICOM SEG: {type(exc).__name__}: {exc}") from exc
