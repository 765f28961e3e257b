"""A :class:`Case`: the unit of input, everything known about one patient at one time.

Modelled on TorchIO's ``Subject``: a case holds images by *role* (``image`` for the primary
input, ``prior`` for an earlier study of the same patient, further roles for extra channels
or sequences), its targets (a class ``label``, a segmentation ``mask``, ``boxes``),
``covariates`` (a treatment code, clinical values: anything JSON-like), an ``id`` and an
optional acquisition ``time``. Which split it belongs to is recorded in ``split``.

Images are **lazy by default**: a role may hold a path (a file or a DICOM folder, read with
:func:`medsight.io.read` when asked for), an :class:`~medsight.io.image.Image` already in
memory, or a bare array in memory (MedMNIST: ``(H, W)``, ``(H, W, C)`` or ``(D, H, W)``,
spacing unknown). :meth:`Case.image` reads a path each time it is called and keeps nothing,
so a dataset of cases holds file names, not volumes; :meth:`Case.load` returns a copy whose
images are all read, for a case that is used many times.

Example:
    >>> case = Case("pt-017", {"image": "ct/2024.nii.gz", "prior": "ct/2023.nii.gz"},
    ...             covariates={"treatment": "pembrolizumab"}, time="2024-03-05")
    >>> case.roles, case.time
    (('image', 'prior'), datetime.date(2024, 3, 5))
    >>> volume = case.image("prior")                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError
from medsight.io.image import Image

__all__ = ["Case", "ImageRef", "PRIMARY"]

#: What a role may hold: a path to read, an Image, or a bare array in memory (MedMNIST).
ImageRef = Image | str | Path | np.ndarray

#: The role of the primary input image.
PRIMARY = "image"


def _parse_time(value: Any, case: str) -> dt.date | dt.datetime | None:
    if value is None or isinstance(value, (dt.date, dt.datetime)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            if len(text) == 8 and text.isdigit():  # DICOM DA: YYYYMMDD
                return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
            return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    raise DataError(f"case {case}: time must be a date or datetime (ISO 8601 or DICOM YYYYMMDD); got {value!r}")


def _array_image(arr: np.ndarray, source: str) -> Image:
    """An Image from a bare in-memory array: ``(H, W, C)`` colour, ``(H, W)`` or ``(D, H, W)``."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (3, 4):  # (H, W, C) colour
        arr = np.moveaxis(arr, -1, 0)
    elif arr.ndim in (2, 3):
        arr = arr[None]
    return Image(array=arr, spacing=(1.0,) * (arr.ndim - 1), source=source, meta={"spacing_known": False})


@dataclass
class Case:
    """One case: images by role, targets, covariates, an id and a time.

    Args:
        id: the case's id, unique within its dataset (a file stem, a patient/study key).
        images: role → image reference (a path, an :class:`Image` or an in-memory array); the
            primary input's role is ``"image"``.
        label: an image-level target: a class index, or a multi-hot vector (multi-label).
        mask: a segmentation target: a path to a label image, or an :class:`Image`.
        boxes: detection targets, ``(N, 2 * n_spatial)`` corners in voxel (array-order)
            coordinates, or None.
        covariates: non-image inputs (treatment code, age, clinical values); JSON-like values.
        time: acquisition date or datetime (ISO 8601 text and DICOM ``YYYYMMDD`` are parsed).
        split: ``train``, ``val``, ``test`` or None (not assigned).

    Raises:
        DataError: an empty id, no image, or a time that is not a date.
    """

    id: str
    images: dict[str, ImageRef]
    label: Any = None
    mask: Image | str | None = None
    boxes: np.ndarray | None = None
    covariates: dict[str, Any] = field(default_factory=dict)
    time: dt.date | dt.datetime | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        if not str(self.id):
            raise DataError("a case needs a non-empty id")
        if not isinstance(self.images, Mapping) or not self.images:
            raise DataError(f"case {self.id}: images must map at least one role to an image; got {self.images!r}")
        self.images = {str(k): (str(v) if isinstance(v, Path) else v) for k, v in self.images.items()}
        if isinstance(self.mask, Path):
            self.mask = str(self.mask)
        self.covariates = dict(self.covariates or {})
        self.time = _parse_time(self.time, self.id)
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64)

    # -- roles ----------------------------------------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        """The image roles, in the order given."""
        return tuple(self.images)

    def path(self, role: str = PRIMARY) -> str | None:
        """The file (or folder) a role is read from; None when the image is held in memory."""
        ref = self._ref(role)
        return ref if isinstance(ref, str) else None

    @property
    def mask_path(self) -> str | None:
        """The mask's file, or None (no mask, or a mask held in memory)."""
        return self.mask if isinstance(self.mask, str) else None

    def is_loaded(self, role: str = PRIMARY) -> bool:
        """Whether a role is held in memory (no read needed)."""
        return not isinstance(self._ref(role), str)

    def _ref(self, role: str) -> ImageRef:
        try:
            return self.images[role]
        except KeyError:
            raise DataError(f"case {self.id}: has no image of role {role!r}; it has {list(self.images)}") from None

    # -- reading --------------------------------------------------------------------------
    def image(self, role: str = PRIMARY) -> Image:
        """The image of ``role``, read from disk when the case holds a path (nothing is kept).

        Raises:
            DataError: no such role.
            MedSightError: the reader's error when the file cannot be read.
        """
        ref = self._ref(role)
        if isinstance(ref, Image):
            return ref
        if isinstance(ref, np.ndarray):
            return _array_image(ref, self.id)
        from medsight.io import read

        return read(ref)

    def read_mask(self) -> Image | None:
        """The mask as stored (no checks; see :func:`medsight.data.segmentation.read_case`), or None."""
        if self.mask is None or isinstance(self.mask, Image):
            return self.mask
        from medsight.io import read

        return read(self.mask)

    def load(self) -> Case:
        """A copy with every image (and the mask) read into memory."""
        return dataclasses.replace(self, images={r: self.image(r) for r in self.images},
                                   mask=self.read_mask(), covariates=dict(self.covariates))

    def __repr__(self) -> str:
        def show(ref: Any) -> str:
            if isinstance(ref, str):
                return repr(Path(ref).name)
            if isinstance(ref, Image):
                return f"Image{ref.shape}"
            return f"array{tuple(np.shape(ref))}" if ref is not None else "None"

        images = ", ".join(f"{r}: {show(v)}" for r, v in self.images.items())
        extra = "".join(f", {k}={v!r}" for k, v in (("label", self.label), ("split", self.split), ("time", self.time))
                        if v is not None and not isinstance(v, np.ndarray))
        mask = f", mask={show(self.mask)}" if self.mask is not None else ""
        cov = f", covariates={sorted(self.covariates)}" if self.covariates else ""
        return f"Case({self.id!r}, {{{images}}}{mask}{extra}{cov})"
