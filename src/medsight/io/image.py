"""The one container for an image and its geometry.

Conventions (the same for every reader, writer and transform):

* ``array`` is channel-first: ``(C, rows, cols)`` for 2D, ``(C, slices, rows, cols)`` for 3D,
  i.e. the spatial axes are in NumPy/DICOM order (z, y, x), never nibabel's (x, y, z).
* ``spacing`` gives the distance between voxel centres in mm, one value per spatial axis, in
  the same order as the array axes. For a DICOM stack the slice spacing is the distance between
  slice positions along the slice normal, not SliceThickness.
* ``origin`` is the patient-space position (DICOM LPS, mm) of the centre of voxel index 0.
* ``direction`` is a ``(3, n_spatial)`` matrix whose column ``a`` is the unit LPS vector along
  which array axis ``a`` increases.

So the LPS position of voxel index ``v`` is ``origin + direction @ (spacing * v)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsight.errors import ShapeError

__all__ = ["Image", "Patient", "default_direction"]


@dataclass(frozen=True)
class Patient:
    """Patient identifiers taken from the source. Kept for exports, never logged or printed."""

    id: str | None = None
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    age: str | None = None

    def __repr__(self) -> str:  # identifiers must not reach logs through a repr
        return "Patient(<hidden>)"

    __str__ = __repr__


def default_direction(n_spatial: int) -> np.ndarray:
    """The direction of an image with no orientation: rows go +y (posterior), columns +x (left)."""
    if n_spatial == 2:
        return np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    if n_spatial == 3:
        return np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    raise ShapeError(f"an image has 2 or 3 spatial dimensions; got {n_spatial}")


@dataclass(eq=False)
class Image:
    """A 2D or 3D image with its physical geometry and where it came from.

    Args:
        array: voxel values, shape ``(C, rows, cols)`` or ``(C, slices, rows, cols)``.
        spacing: mm between voxel centres along each spatial axis (array order).
        origin: LPS position in mm of the centre of the first voxel.
        direction: ``(3, n_spatial)`` unit column vectors; None means :func:`default_direction`.
        modality: DICOM modality code (CT, MR, CR, DX, US, ...) or "OT" when unknown.
        study_uid: StudyInstanceUID of the source, when known.
        series_uid: SeriesInstanceUID of the source, when known.
        sop_uids: SOPInstanceUIDs of the source instances, in array order.
        frame_of_reference_uid: FrameOfReferenceUID of the source, when known.
        patient: identifiers of the patient (hidden from reprs and logs).
        source: the path or description the image was read from.
        meta: further facts about the source (units, photometric interpretation, window,
            series description, body part, files skipped ...). JSON-compatible values only.

    Raises:
        ShapeError: the array or geometry have inconsistent dimensions.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray | None = None
    modality: str = "OT"
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uids: tuple[str, ...] = ()
    frame_of_reference_uid: str | None = None
    patient: Patient = field(default_factory=Patient)
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim not in (3, 4):
            raise ShapeError(
                "Image.array must be channel-first (C, rows, cols) or (C, slices, rows, cols); "
                f"got shape {array.shape}"
            )
        self.array = array
        n = array.ndim - 1
        self.spacing = tuple(float(s) for s in self.spacing)
        if len(self.spacing) != n or any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ShapeError(f"spacing must be {n} positive numbers; got {self.spacing}")
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        if len(self.origin) != 3:
            raise ShapeError(f"origin must be 3 numbers (LPS mm); got {self.origin}")
        direction = default_direction(n) if self.direction is None else np.asarray(self.direction, float)
        if direction.shape != (3, n):
            raise ShapeError(f"direction must have shape (3, {n}); got {direction.shape}")
        self.direction = direction
        self.sop_uids = tuple(self.sop_uids)

    # -- shape ---------------------------------------------------------------------------
    @property
    def n_spatial(self) -> int:
        """2 for a 2D image, 3 for a volume."""
        return self.array.ndim - 1

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape, array order."""
        return tuple(self.array.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.array.shape[0])

    # -- geometry ------------------------------------------------------------------------
    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix from array index (spatial axes, array order) to LPS mm.

        For a 2D image the third index column is the slice normal with unit length.
        """
        assert self.direction is not None
        m = np.eye(4)
        cols = self.direction * np.asarray(self.spacing)[None, :]
        if self.n_spatial == 2:
            normal = np.cross(self.direction[:, 0], self.direction[:, 1])
            cols = np.column_stack([cols, normal])
        m[:3, :3] = cols
        m[:3, 3] = self.origin
        return m

    @property
    def spacing_known(self) -> bool:
        """False when the source gave no spacing and ``spacing`` is the 1 mm stand-in.

        Readers record it in ``meta["spacing_known"]``: PNG/JPEG/TIFF, a bare NumPy array, a DICOM
        without PixelSpacing, a MetaImage without ElementSpacing are False; an image whose reader
        says nothing (NIfTI, whose zooms are always set) counts as known. Tasks that measure in mm
        (detection's diameters and volumes) check it and refuse, or flag, an image without it.
        """
        return self.meta.get("spacing_known", True) is not False

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³ (area in mm² for a 2D image)."""
        return float(np.prod(self.spacing))

    def same_geometry(self, other: Image, *, atol: float = 1e-3) -> bool:
        """True when ``other`` has the same spatial shape, spacing, origin and direction."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=max(atol, 1e-2))
            and np.allclose(self.direction, other.direction, atol=atol)  # type: ignore[arg-type]
        )

    # -- copies --------------------------------------------------------------------------
    def with_array(self, array: np.ndarray, **changes: Any) -> Image:
        """A copy with another array (same geometry unless ``changes`` says otherwise)."""
        changes.setdefault("meta", dict(self.meta))
        return dataclasses.replace(self, array=array, **changes)

    def summary(self) -> dict[str, Any]:
        """What ``medsight info`` shows: no patient identifiers."""
        finite = self.array[np.isfinite(self.array)] if self.array.dtype.kind == "f" else self.array
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (None, None)
        return {
            "source": self.source,
            "modality": self.modality,
            "shape": list(self.shape),
            "channels": self.channels,
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "origin_mm": [round(o, 4) for o in self.origin],
            "direction": np.round(self.direction, 6).tolist(),  # type: ignore[union-attr]
            "dtype": str(self.array.dtype),
            "intensity_range": [lo, hi],
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "n_instances": len(self.sop_uids),
            **{k: v for k, v in self.meta.items() if k in _SUMMARY_META},
        }

    def __repr__(self) -> str:
        return (
            f"Image(shape={self.shape}, channels={self.channels}, dtype={self.array.dtype}, "
            f"spacing={tuple(round(s, 4) for s in self.spacing)}, modality={self.modality!r}, "
            f"source={self.source!r})"
        )


_SUMMARY_META = {
    "units",
    "series_description",
    "body_part",
    "photometric_interpretation",
    "slice_thickness_mm",
    "warnings",
    "format",
    "transfer_syntax",
    "spacing_known",
}
