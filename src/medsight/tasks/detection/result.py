"""The detection result: one :class:`NoduleFinding` per nodule found at the operating threshold."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from medsight.tasks.results import Artifact, Finding, Provenance, Region, Result, _plain

__all__ = ["NoduleFinding", "DetectionResult"]


@dataclass
class NoduleFinding:
    """One nodule.

    Attributes:
        lesion_id: "1", "2", ... by decreasing score.
        center_mm: centre ``[x, y, z]`` in patient LPS mm (LUNA16's coordX, coordY, coordZ).
        center_voxel: centre in the input's array indices ``[slice, row, column]``.
        diameter_mm: equivalent-sphere diameter of the segmented nodule.
        volume_ml: its volume.
        score: the detector's probability.
        type: solid, part-solid or ground-glass (from the attenuation inside it).
        solid_diameter_mm: the solid component (part-solid), else the diameter (solid) or 0.
        category: the Lung-RADS size category of the model's table.
        size_mm: its extent along x, y, z in mm.
        inside_lungs: the centre lies inside the lung mask (False only when the mask was not used).
        crop: an axial crop through the centre, ``(H, W, 3)`` uint8 (not in JSON; an artifact).
    """

    lesion_id: str
    center_mm: list[float]
    center_voxel: list[float]
    diameter_mm: float
    volume_ml: float
    score: float
    type: str
    solid_diameter_mm: float
    category: str
    size_mm: list[float]
    inside_lungs: bool = True
    crop: Any = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "crop"}


@dataclass
class DetectionResult(Result):
    """Nodules of one CT scan at the operating ``threshold``, sorted by score.

    Attributes:
        nodules: the nodules (``findings`` in its JSON, the interface of docs/detection.md).
        threshold: the operating point (a finding's score is at least this).
        n_candidates: candidates the network proposed before the threshold and the lung filter.
        lungs: what the lung mask found (volumes in mL; ``found`` False: the whole volume was searched).
        overlay: an axial slice through the top finding with every finding on it circled.
        overlay_slice: the input's slice (array index) the overlay shows.
        overlay_source: that slice's DICOM file, when the input was DICOM (what its SC references).
        warnings: what the reader noted about the input (missing slices filled, odd headers).
        heatmap: how its explanation was made, when one was asked for (``explain``: the findings
            drawn on the slice through the top one, which ``overlay`` is); None otherwise.

    Its ``--csv`` rows (:meth:`csv_rows`) are one per finding in LUNA16's findings columns
    (``seriesuid,coordX,coordY,coordZ,diameter_mm,probability``), so the table is scored as it is
    by ``medsight evaluate --findings``; a scan without a finding gets one row with empty finding
    columns. ``seriesuid`` is the input's series UID (DICOM), else its file name without the
    volume suffix (LUNA16 names each scan ``<seriesuid>.mhd``).
    """

    input: str
    nodules: list[NoduleFinding]
    threshold: float
    n_candidates: int
    lungs: dict[str, Any]
    provenance: Provenance
    overlay: Any = field(default=None, repr=False)
    overlay_slice: int | None = None
    overlay_source: str | None = field(default=None, repr=False)
    output: str | None = None
    warnings: list[str] = field(default_factory=list)
    task: str = "detection"
    heatmap: dict[str, Any] | None = None

    @property
    def seriesuid(self) -> str:
        """The scan's id in LUNA16 files: the series UID, else the file name without its suffix."""
        from pathlib import Path

        from medsight.tasks.detection.data import scan_uid_of

        return self.provenance.series_uid or scan_uid_of(self.input) or Path(self.input).name

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "task": self.task, "seriesuid": self.seriesuid, "threshold": self.threshold,
                "findings": [n.to_dict() for n in self.nodules], "n_candidates": self.n_candidates,
                "lungs": _plain(self.lungs), "warnings": list(self.warnings), "provenance": _plain(self.provenance),
                "output": self.output, **({} if self.heatmap is None else {"heatmap": _plain(self.heatmap)})}

    def findings(self) -> list[Finding]:
        out = [Finding("nodule_count", float(len(self.nodules)), "1", title="Nodules found")]
        for n in self.nodules:
            region = Region(center_mm=tuple(n.center_mm), size_mm=tuple(n.size_mm))
            lid = n.lesion_id
            at = {"lesion_id": lid, "region": region}
            out += [Finding("nodule_diameter_mm", n.diameter_mm, "mm", title="Nodule diameter", **at),
                    Finding("nodule_volume_ml", n.volume_ml, "mL", title="Nodule volume", **at),
                    Finding("nodule_score", n.score, "1", title="Nodule probability", **at),
                    Finding("nodule_type", text=n.type, title="Nodule type", **at),
                    Finding("nodule_category", text=n.category, title="Lung-RADS category", **at)]
        return out

    def artifacts(self) -> list[Artifact]:
        out = ([Artifact("overlay", self.overlay, slice_index=self.overlay_slice, source=self.overlay_source)]
               if self.overlay is not None else [])
        out += [Artifact("crop", n.crop, {int(n.lesion_id): f"nodule {n.lesion_id}"},
                         slice_index=int(round(n.center_voxel[0])))
                for n in self.nodules if n.crop is not None]
        return out

    @classmethod
    def csv_columns(cls, model: Any) -> list[str]:
        return ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "probability", "lesion_id", "volume_ml",
                "type", "category", "n_findings", "threshold", "output"]

    def csv_rows(self) -> list[dict[str, Any]]:
        base = {"input": self.input, "seriesuid": self.seriesuid, "n_findings": len(self.nodules),
                "threshold": self.threshold, "output": self.output or ""}
        if not self.nodules:
            return [base]
        return [{**base, "coordX": n.center_mm[0], "coordY": n.center_mm[1], "coordZ": n.center_mm[2],
                 "diameter_mm": n.diameter_mm, "probability": n.score, "lesion_id": n.lesion_id,
                 "volume_ml": n.volume_ml, "type": n.type, "category": n.category} for n in self.nodules]

    def csv_row(self) -> dict[str, Any]:
        """The first of :meth:`csv_rows` (the top finding)."""
        return self.csv_rows()[0]

    def summary(self) -> tuple[str, str]:
        warn = f"; warning: {self.warnings[0]}" + (f" (+{len(self.warnings) - 1})" if len(self.warnings) > 1 else "") \
            if self.warnings else ""
        if not self.nodules:
            return "no nodule", f"(threshold {self.threshold:.2f}, {self.n_candidates} candidates){warn}"
        parts = [f"#{n.lesion_id} {n.diameter_mm:.1f} mm {n.type} {n.category} p={n.score:.2f}"
                 for n in self.nodules[:5]]
        return f"{len(self.nodules)} nodule(s)", "; ".join(parts) + warn

    def record_output(self, path: str) -> None:
        self.output = path
