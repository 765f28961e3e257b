"""Typed results: the same objects for the Python API, the CLI and the service.

Every result follows one protocol (:class:`Result`), so nothing outside a task's own code
asks what kind of result it holds:

* ``to_dict()``: the JSON-ready description (keys stable: the CLI's ``--json``, the
  service's stored outputs and the docs rely on them); arrays are never copied (a mask is
  described by its shape and spacing, and written by a writer);
* ``findings()``: what was found, as :class:`Finding` values with units (a classification's
  class probabilities, threshold and decision; a segmentation's volume per structure in mL;
  a detector's nodules, each with its lesion id and region in patient mm);
* ``artifacts()``: the large outputs as :class:`Artifact` (a mask, an overlay), which the
  writers of :mod:`medsight.tasks.writers` turn into files;
* ``csv_columns(model)`` / ``csv_row()`` / ``csv_rows()``: the columns a results table has for
  this type, and the rows of one result (one, unless a result holds several findings that each
  get a row, as a detector's nodules do).

:class:`PredictionError` follows the protocol too (no findings, no artifacts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

__all__ = ["Provenance", "Finding", "Region", "Artifact", "Result", "ClassificationResult", "SegmentationResult",
           "PredictionError", "utc_now", "array_sha256"]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def array_sha256(arr: Any) -> str:
    """SHA-256 of an array's bytes (C order) and shape: the identity of an input image."""
    import numpy as np

    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(str((a.shape, str(a.dtype))).encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """JSON-ready copy of dataclasses, dicts and lists; any other value as it is (no deep copy)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class Provenance:
    """Which model produced a result, from which input, when."""

    model: str
    model_version: str
    weights_sha256: str | None
    input_sha256: str | None
    created: str = field(default_factory=utc_now)
    seconds: float | None = None
    medsight_version: str | None = None
    series_uid: str | None = None
    sop_uids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Region:
    """Where a finding is, in patient millimetres (LPS, as :mod:`medsight.io.image` defines).

    Attributes:
        center_mm: the centre ``(x, y, z)`` in mm.
        size_mm: its extent along x, y, z in mm (a nodule's box), when known.
    """

    center_mm: tuple[float, ...]
    size_mm: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"center_mm": [float(v) for v in self.center_mm],
                "size_mm": None if self.size_mm is None else [float(v) for v in self.size_mm]}


@dataclass(frozen=True)
class Finding:
    """One thing a result found: a measurement (``value`` in ``unit``) or a category (``text``).

    Attributes:
        name: the stable key alert rules and the findings table use, e.g.
            ``volume_ml_Anterior``, ``nodule_diameter_mm``, ``probability_pneumonia``.
        value: the number, when there is one.
        unit: its UCUM unit (``"1"`` unitless, ``"mm"``, ``"mL"``, ``"%"``).
        text: a categorical result, e.g. the decision ``"pneumonia"``.
        title: the human name a report shows (a DICOM SR concept meaning); by default the
            name with spaces for underscores.
        lesion_id: which lesion it belongs to, when a result finds several (nodule ``"1"``, ``"2"``).
        region: where it is, in patient mm, when the task knows.
    """

    name: str
    value: float | None = None
    unit: str = "1"
    text: str | None = None
    title: str | None = None
    lesion_id: str | None = None
    region: Region | None = None

    @property
    def display_name(self) -> str:
        return self.title or self.name.replace("_", " ")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "text": self.text, "title": self.title,
                "lesion_id": self.lesion_id, "region": None if self.region is None else self.region.to_dict()}


@dataclass(frozen=True)
class Artifact:
    """A large output of a result, written to a file by a writer rather than put in JSON.

    Attributes:
        kind: ``"mask"`` (a label image), ``"overlay"`` (an RGB picture of the whole result, sent
            as a Secondary Capture) or ``"crop"`` (an RGB picture of one lesion, e.g. a nodule's
            axial crop).
        value: a :class:`~medsight.io.image.Image` for a mask, an ``(H, W, 3)`` uint8 array for an
            overlay or a crop.
        labels: label value → structure name (masks); lesion id → its name for a crop
            (``{1: "nodule 1"}``: the file ``<case>_nodule1.png``).
        slice_index: the input's slice (array index along its first spatial axis) a picture of a
            3D input was drawn on, when it is one slice: an SC of it references that slice.
        source: that slice's source DICOM file, when the input was read from DICOM (what the
            ``sc`` writer re-reads when it is given no source datasets).
    """

    kind: str
    value: Any
    labels: dict[int, str] = field(default_factory=dict)
    slice_index: int | None = None
    source: str | None = None


class Result:
    """The protocol every result follows (see the module docstring)."""

    input: str
    #: False only for :class:`PredictionError`: whether the result holds a prediction.
    ok: ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def findings(self) -> list[Finding]:
        return []

    def artifacts(self) -> list[Artifact]:
        return []

    @classmethod
    def csv_columns(cls, model: Any) -> list[str]:
        """The columns of this type's CSV rows, between ``input`` and ``error``, for ``model``."""
        return []

    def csv_row(self) -> dict[str, Any]:
        return {"input": self.input}

    def csv_rows(self) -> list[dict[str, Any]]:
        """The rows of this result in a ``--csv`` table: one, :meth:`csv_row`, unless the result
        holds several things that each get a row (a detector: one row per finding, and one row
        with empty finding columns when it found nothing, so the table shows the input was read)."""
        return [self.csv_row()]

    def summary(self) -> tuple[str, str]:
        """One line for a results table: ``(headline, details)``, e.g. the decision and the probabilities."""
        return "", ""

    def record_output(self, path: str) -> None:
        """Note where the result's files were written (types that report it keep it in ``to_dict()``)."""


@dataclass
class ClassificationResult(Result):
    """Per-class probabilities and the decision at the model's threshold.

    Attributes:
        probabilities: class name → probability.
        label: the decision (class name; for multi-label, the positive labels joined by ``|``).
        score: probability of the positive class (binary models), else None.
        threshold: the operating threshold the decision used (binary and multi-label).
        positive: whether the decision is the positive class (binary models).
        heatmap: how the explanation was made, when one was asked for (method, layer, class,
            where its peak is in the input's pixels); None otherwise.
        overlay: the heatmap drawn on the image, ``(H, W, 3)`` uint8 (an ``overlay`` artifact:
            ``<case>_overlay.png`` and, for a DICOM input, a Secondary Capture).
        overlay_source: the DICOM file the overlay is drawn on, for the Secondary Capture.
        refer: for a model with a training fingerprint (``manifest.ood``): whether the input is
            referred (its decision is then ``refer``; the probabilities stand); None otherwise.
        reasons: why it was referred, or that it was not, with the numbers.
        distance: the input's distance from the training fingerprint (a model with
            ``manifest.ood``), what the service's drift monitor follows; None otherwise.
        uncertainty: the predictive entropy of the probabilities (``entropy`` in nats,
            ``entropy_normalised`` by log of the number of classes), and when they average several
            predictions (ensemble members, test-time flips) ``mutual_information``, the part due to
            their disagreement; ``method`` says which.
    """

    input: str
    probabilities: dict[str, float]
    label: str
    score: float | None
    threshold: float | None
    positive: bool | None
    provenance: Provenance
    task: str = "classification"
    heatmap: dict[str, Any] | None = None
    overlay: Any = field(default=None, repr=False)
    overlay_source: str | None = None
    refer: bool | None = None
    reasons: list[str] | None = None
    distance: float | None = None
    uncertainty: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = _plain({k: v for k, v in vars(self).items() if k not in ("overlay", "overlay_source")})
        # only for models that give them: the outputs of others stay as they were
        for key in ("heatmap", "refer", "reasons", "distance", "uncertainty"):
            if out.get(key) is None:
                out.pop(key, None)
        return out

    def artifacts(self) -> list[Artifact]:
        return [] if self.overlay is None else [Artifact("overlay", self.overlay, source=self.overlay_source)]

    def findings(self) -> list[Finding]:
        out = [Finding(f"probability_{lab}", float(p), "1", title=f"Probability of {lab}"[:64])
               for lab, p in self.probabilities.items()]
        if self.threshold is not None:
            out.append(Finding("threshold", float(self.threshold), "1", title="Operating threshold"))
        if self.label:
            out.append(Finding("decision", text=str(self.label), title="Decision"))
        return out

    @classmethod
    def csv_columns(cls, model: Any) -> list[str]:
        return ["label", *[f"p_{lab}" for lab in model.labels]]

    def csv_row(self) -> dict[str, Any]:
        return {"input": self.input, "label": self.label,
                **{f"p_{lab}": p for lab, p in self.probabilities.items()}}

    def summary(self) -> tuple[str, str]:
        return self.label, "(" + ", ".join(f"{k} {v:.3f}" for k, v in self.probabilities.items()) + ")"


@dataclass
class SegmentationResult(Result):
    """A label mask in the input's geometry and the volume of each structure.

    Attributes:
        heatmap, overlay, overlay_slice, overlay_source: its explanation, when one was asked for
            (``explain``: the foreground probability drawn on the slice with the most labelled
            voxels); None otherwise.
    """

    input: str
    mask: Any  # medsight.io.Image with integer labels
    labels: dict[int, str]
    volumes_ml: dict[str, float]
    provenance: Provenance
    output: str | None = None
    task: str = "segmentation"
    heatmap: dict[str, Any] | None = None
    overlay: Any = field(default=None, repr=False)
    overlay_slice: int | None = None
    overlay_source: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = ("mask", "overlay", "overlay_slice", "overlay_source", "heatmap")
        d = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skip}
        d["labels"] = {str(k): v for k, v in self.labels.items()}
        d["shape"] = list(self.mask.shape)
        d["spacing_mm"] = list(self.mask.spacing)
        if self.heatmap is not None:  # only when explained: the outputs of others stay as they were
            d["heatmap"] = _plain(self.heatmap)
        return d

    def findings(self) -> list[Finding]:
        return [Finding(f"volume_ml_{name}", float(v), "mL", title=f"Volume of {name}"[:64])
                for name, v in self.volumes_ml.items()]

    def artifacts(self) -> list[Artifact]:
        out = [Artifact("mask", self.mask, dict(self.labels))]
        if self.overlay is not None:
            out.append(Artifact("overlay", self.overlay, slice_index=self.overlay_slice, source=self.overlay_source))
        return out

    @classmethod
    def csv_columns(cls, model: Any) -> list[str]:
        values = model.manifest.get("label_values") or range(len(model.labels))
        names = [n for v, n in zip(values, model.labels) if int(v) != 0]
        return [*[f"volume_ml_{n}" for n in names], "output"]

    def csv_row(self) -> dict[str, Any]:
        return {"input": self.input, **{f"volume_ml_{n}": v for n, v in self.volumes_ml.items()},
                "output": self.output or ""}

    def summary(self) -> tuple[str, str]:
        vols = ", ".join(f"{k} {v:.3f} mL" for k, v in self.volumes_ml.items())
        return "", vols + (f"  → {self.output}" if self.output else "")

    def record_output(self, path: str) -> None:
        self.output = path


@dataclass
class PredictionError(Result):
    """An input that could not be predicted, and why."""

    input: str
    error: str
    error_type: str
    ok: ClassVar[bool] = False

    def csv_row(self) -> dict[str, Any]:
        return {"input": self.input, "error": self.error}

    def summary(self) -> tuple[str, str]:
        return "error", self.error
