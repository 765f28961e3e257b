"""Who made a derived DICOM object: written as its Manufacturer, ManufacturerModelName and
SoftwareVersions, a SEG's AlgorithmIdentificationSequence and an SR's device observer."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Algorithm"]


@dataclass(frozen=True)
class Algorithm:
    """Who made a result.

    Args:
        name: the model's name, e.g. ``"pneumonia-xray"``.
        version: the model's version, e.g. ``"1.0.0"``.
        manufacturer: written as the result's Manufacturer.
    """

    name: str
    version: str
    manufacturer: str = "MedSight"
