"""A Lung-RADS-style size category for a lung nodule found on a baseline screening CT.

Source: American College of Radiology, *Lung-RADS v2022* (released November 2022),
https://www.acr.org/Clinical-Resources/Reporting-and-Data-Systems/Lung-Rads. What is implemented
is the **baseline, size-only** part of its table, simplified:

=============  ================================================  ========
nodule type    size (mean diameter, mm)                           category
=============  ================================================  ========
solid          < 6                                                2
solid          6 to < 8                                           3
solid          8 to < 15                                          4A
solid          >= 15                                              4B
part-solid     total < 6                                          2
part-solid     total >= 6, solid component < 6                    3
part-solid     total >= 6, solid component 6 to < 8               4A
part-solid     total >= 6, solid component >= 8                   4B
ground-glass   < 30                                               2
ground-glass   >= 30                                              3
=============  ================================================  ========

Not implemented (they need what a size does not give): new and growing nodules on follow-up
(their own, lower cut-offs), category 1 (no nodule, benign calcification or fat), juxtapleural
and perifissural rules, airway nodules, atypical pulmonary cysts, category 4X (suspicious extra
features) and the S modifier. A part-solid nodule whose solid component is not given is scored
from its total diameter alone (category 3 at >= 6 mm): the lowest category the table allows,
so the size category never over-states what was measured. Sizes are the mean of the long and
short axes, which Lung-RADS v2022 reports to one decimal place; the diameter is rounded to
``round_to_mm`` (0.1) before the cut-offs are applied.

The table is a value (:class:`LungRadsTable`): a site with another version or its own cut-offs
passes its own. Categories order as ``1 < 2 < 3 < 4A < 4B < 4X``; :func:`category_at_least`
compares them, for alert rules such as "category 4A or higher".
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medsight.errors import ConfigError

__all__ = ["NoduleType", "SizeBand", "LungRadsTable", "LUNG_RADS_V2022", "lung_rads_category",
           "category_at_least", "CATEGORY_ORDER"]

NoduleType = Literal["solid", "part-solid", "ground-glass"]

#: Lung-RADS categories from least to most suspicious.
CATEGORY_ORDER = ("0", "1", "2", "3", "4A", "4B", "4X")


class SizeBand(BaseModel):
    """Diameters below ``below_mm`` (None: no upper bound) get ``category``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    below_mm: float | None
    category: str

    @field_validator("category")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in CATEGORY_ORDER:
            raise ValueError(f"category must be one of {', '.join(CATEGORY_ORDER)}; got {v!r}")
        return v


def _check_bands(bands: list[SizeBand]) -> list[SizeBand]:
    bounds = [b.below_mm for b in bands]
    if not bands or bounds[-1] is not None or any(b is None for b in bounds[:-1]):
        raise ValueError("size bands must end with exactly one open band (below_mm: null) and have bounds before it")
    finite = [b for b in bounds[:-1] if b is not None]
    if any(not lo < hi for lo, hi in zip(finite, finite[1:])) or any(b <= 0 for b in finite):
        raise ValueError(f"size band bounds must be positive and increasing; got {finite}")
    return bands


def _band(bands: list[SizeBand], d: float) -> str:
    for b in bands:
        if b.below_mm is None or d < b.below_mm:
            return b.category
    raise AssertionError("unreachable: the last band is open")


class LungRadsTable(BaseModel):
    """Size → category, per nodule type (defaults: Lung-RADS v2022 baseline, see the module docstring).

    Attributes:
        version: a label for reports (``"Lung-RADS v2022 baseline (size only)"``).
        solid: bands on the mean diameter of a solid nodule.
        part_solid_total_below_mm: a part-solid nodule smaller than this (total) is
            ``part_solid_small_category``.
        part_solid_small_category: the category of a small part-solid nodule.
        part_solid_component: bands on the solid component of a larger part-solid nodule.
        ground_glass: bands on the mean diameter of a ground-glass (non-solid) nodule.
        round_to_mm: diameters are rounded to this step before the cut-offs (0: not rounded).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = "Lung-RADS v2022 baseline (size only)"
    solid: list[SizeBand] = Field(default_factory=lambda: [
        SizeBand(below_mm=6, category="2"), SizeBand(below_mm=8, category="3"),
        SizeBand(below_mm=15, category="4A"), SizeBand(below_mm=None, category="4B")])
    part_solid_total_below_mm: float = 6.0
    part_solid_small_category: str = "2"
    part_solid_component: list[SizeBand] = Field(default_factory=lambda: [
        SizeBand(below_mm=6, category="3"), SizeBand(below_mm=8, category="4A"),
        SizeBand(below_mm=None, category="4B")])
    ground_glass: list[SizeBand] = Field(default_factory=lambda: [
        SizeBand(below_mm=30, category="2"), SizeBand(below_mm=None, category="3")])
    round_to_mm: float = Field(default=0.1, ge=0)

    @field_validator("part_solid_small_category")
    @classmethod
    def _small(cls, v: str) -> str:
        return SizeBand(below_mm=None, category=v).category

    @field_validator("solid", "part_solid_component", "ground_glass")
    @classmethod
    def _bands(cls, v: list[SizeBand]) -> list[SizeBand]:
        return _check_bands(v)

    @classmethod
    def from_dict(cls, data: dict) -> LungRadsTable:
        """A table from a config mapping (YAML).

        Raises:
            ConfigError: an unknown key, a bad category, or bands that do not end open or do not increase.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"Lung-RADS table: {where}: {err['msg']}") from None

    def _round(self, d: float) -> float:
        return round(round(d / self.round_to_mm) * self.round_to_mm, 9) if self.round_to_mm else d

    def category(self, nodule_type: NoduleType, diameter_mm: float, *, solid_component_mm: float | None = None) -> str:
        """The category of one nodule.

        Args:
            nodule_type: ``solid``, ``part-solid`` or ``ground-glass``.
            diameter_mm: the mean diameter (of the whole nodule for a part-solid one), mm.
            solid_component_mm: a part-solid nodule's solid component's mean diameter, mm.

        Raises:
            ConfigError: an unknown nodule type, or a diameter that is not a finite number > 0,
                or a solid component larger than the nodule.
        """
        if not (isinstance(diameter_mm, int | float) and math.isfinite(diameter_mm) and diameter_mm > 0):
            raise ConfigError(f"The nodule diameter must be a finite number of mm > 0. Got {diameter_mm!r} instead.")
        d = self._round(float(diameter_mm))
        if nodule_type == "solid":
            return _band(self.solid, d)
        if nodule_type == "ground-glass":
            return _band(self.ground_glass, d)
        if nodule_type != "part-solid":
            raise ConfigError("The nodule type must be solid, part-solid or ground-glass. "
                              f"Got {nodule_type!r} instead.")
        if d < self.part_solid_total_below_mm:
            return self.part_solid_small_category
        if solid_component_mm is None:
            return self.part_solid_component[0].category
        if not (math.isfinite(solid_component_mm) and 0 <= solid_component_mm <= diameter_mm):
            raise ConfigError(f"The solid component must be between 0 and the nodule's diameter ({diameter_mm:g} mm). "
                              f"Got {solid_component_mm!r} instead.")
        return _band(self.part_solid_component, self._round(float(solid_component_mm)))


#: The default table: Lung-RADS v2022, baseline screening, size only.
LUNG_RADS_V2022 = LungRadsTable()


def lung_rads_category(nodule_type: NoduleType, diameter_mm: float, *, solid_component_mm: float | None = None,
                       table: LungRadsTable = LUNG_RADS_V2022) -> str:
    """The Lung-RADS size category of a nodule (``table.category``; default Lung-RADS v2022 baseline)."""
    return table.category(nodule_type, diameter_mm, solid_component_mm=solid_component_mm)


def category_at_least(category: str, minimum: str) -> bool:
    """Whether ``category`` is ``minimum`` or more suspicious (``"4B"`` is at least ``"4A"``).

    Raises:
        ConfigError: a category that is not one of :data:`CATEGORY_ORDER`.
    """
    for c in (category, minimum):
        if c not in CATEGORY_ORDER:
            raise ConfigError(f"A Lung-RADS category must be one of {', '.join(CATEGORY_ORDER)}. Got {c!r} instead.")
    return CATEGORY_ORDER.index(category) >= CATEGORY_ORDER.index(minimum)
