"""Response criteria as named presets: RECIST 1.1-like, RANO-like and volumetric.

A criterion turns each time point's lesions into one number (a sum of longest diameters, a sum
of bidimensional products, or a volume) and classifies the latest time point against the
baseline (for response) and the nadir, the smallest earlier value (for progression), as the
clinical criteria do. Each preset states its thresholds; :func:`register_criteria` adds more
and :func:`get_criteria` finds one by name.

These are criteria *like* RECIST 1.1 and RANO, computed from masks: lesions are not matched
across time points (each time point's sum is over its own largest measurable lesions), new
lesions and non-target disease are not assessed, and RANO's clinical inputs (steroid dose,
clinical status, non-enhancing disease) are not used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from medsight.response.measure import MaskMeasure
from medsight.response.presets import Presets

__all__ = ["PROGRESSIVE", "STABLE", "PARTIAL", "COMPLETE", "CATEGORIES", "ResponseCriteria", "Assessment",
           "assess", "register_criteria", "get_criteria", "list_criteria", "DEFAULT_CRITERIA"]

PROGRESSIVE = "progressive disease"
STABLE = "stable disease"
PARTIAL = "partial response"
COMPLETE = "complete response"
CATEGORIES = (PROGRESSIVE, STABLE, PARTIAL, COMPLETE)

Quantity = Literal["sum_longest_diameters", "sum_products", "volume"]
_UNITS = {"sum_longest_diameters": "mm", "sum_products": "mm²", "volume": "mL"}
_WHAT = {"sum_longest_diameters": "sum of longest diameters", "sum_products": "sum of bidimensional products",
         "volume": "lesion volume"}
_EPS = 1e-9  # percent changes exactly at a threshold count as meeting it despite float rounding


class ResponseCriteria(BaseModel):
    """One set of response criteria: what is measured and the thresholds that classify it.

    Attributes:
        name: the registry key (``--criteria NAME``).
        title: a readable name for reports.
        quantity: ``sum_longest_diameters`` (mm), ``sum_products`` (mm²) or ``volume`` (mL,
            every lesion voxel).
        max_lesions: the largest this many measurable lesions are summed (None: all).
        min_longest_diameter_mm: a lesion is measurable when its longest diameter is at least this.
        min_perpendicular_diameter_mm: ... and its perpendicular diameter at least this.
        progression_pct: progression when the value is at least this many percent above the nadir ...
        progression_min_increase: ... and at least this much above it, in the quantity's unit.
        partial_pct: partial response when the value is at least this many percent below baseline.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    quantity: Quantity
    max_lesions: int | None = Field(default=None, ge=1)
    min_longest_diameter_mm: float = Field(default=0.0, ge=0)
    min_perpendicular_diameter_mm: float = Field(default=0.0, ge=0)
    progression_pct: float = Field(gt=0)
    progression_min_increase: float = Field(default=0.0, ge=0)
    partial_pct: float = Field(gt=0, le=100)

    @property
    def unit(self) -> str:
        return _UNITS[self.quantity]

    @property
    def quantity_label(self) -> str:
        """What is measured, with its unit: ``sum of longest diameters (mm)``."""
        return f"{_WHAT[self.quantity]} ({self.unit})"

    def describe(self) -> str:
        """One sentence: what is summed and the thresholds."""
        what = _WHAT[self.quantity]
        if self.quantity != "volume":
            limits = [f"longest diameter ≥ {self.min_longest_diameter_mm:g} mm"] if self.min_longest_diameter_mm else []
            if self.min_perpendicular_diameter_mm:
                limits.append(f"perpendicular diameter ≥ {self.min_perpendicular_diameter_mm:g} mm")
            count = f"up to {self.max_lesions} " if self.max_lesions else "all "
            what += f" of {count}lesions" + (f" with {' and '.join(limits)}" if limits else "")
        else:
            what += " (every lesion voxel)"
        extra = (f" and ≥ +{self.progression_min_increase:g} {self.unit}" if self.progression_min_increase else "")
        return (f"{self.title}: {what}; progression ≥ +{self.progression_pct:g} %{extra} from the nadir, partial "
                f"response ≤ −{self.partial_pct:g} % from baseline, complete response when no lesion remains")

    def format(self, value: float) -> str:
        """A value with its unit, to the precision it is read at: ``33.1 mm``, ``729 mm²``, ``8.11 mL``."""
        return _fmt(value, self.unit)

    def progression_level(self, nadir: float) -> float:
        """The smallest value that counts as progression from ``nadir``, in the quantity's unit."""
        return max(nadir * (1 + self.progression_pct / 100), nadir + self.progression_min_increase)

    def partial_level(self, baseline: float) -> float:
        """The largest value that counts as partial response from ``baseline``."""
        return baseline * (1 - self.partial_pct / 100)

    def value(self, measure: MaskMeasure) -> tuple[float, list[int]]:
        """This criterion's number for one time point, and the indices of the lesions it used."""
        if self.quantity == "volume":
            return measure.whole.volume_ml, list(range(len(measure.lesions)))
        measurable = [i for i, lesion in enumerate(measure.lesions)
                      if lesion.longest_diameter_mm >= self.min_longest_diameter_mm - _EPS
                      and lesion.perpendicular_diameter_mm >= self.min_perpendicular_diameter_mm - _EPS]
        key = (lambda i: measure.lesions[i].longest_diameter_mm) if self.quantity == "sum_longest_diameters" \
            else (lambda i: measure.lesions[i].product_mm2)
        used = sorted(measurable, key=key, reverse=True)[: self.max_lesions]
        return float(sum(key(i) for i in used)), sorted(used)


@dataclass(frozen=True)
class Assessment:
    """The response category of the latest time point under one set of criteria, and why.

    ``category`` is one of :data:`CATEGORIES`, or None for a baseline only or a case the
    criteria cannot assess; ``rule`` names what decided (``progression``, ``complete``,
    ``partial``, ``stable``, ``baseline only``, ``not evaluable``).
    """

    criteria: str
    category: str | None
    rule: str
    unit: str
    values: tuple[float, ...]
    baseline: float
    nadir: float | None = None
    nadir_index: int | None = None
    change_from_baseline_pct: float | None = None
    change_from_nadir_pct: float | None = None
    change_from_nadir: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | str | None:
            return None if v is None else ("inf" if math.isinf(v) else round(v, 4))

        return {"criteria": self.criteria, "category": self.category, "rule": self.rule, "unit": self.unit,
                "values": [r(v) for v in self.values], "baseline": r(self.baseline), "nadir": r(self.nadir),
                "nadir_index": self.nadir_index, "change_from_baseline_pct": r(self.change_from_baseline_pct),
                "change_from_nadir_pct": r(self.change_from_nadir_pct), "change_from_nadir": r(self.change_from_nadir),
                "thresholds": self.thresholds, "reasons": list(self.reasons)}


def _pct(value: float, reference: float) -> float:
    if reference == 0:
        return math.inf if value > 0 else 0.0
    return 100.0 * (value - reference) / reference


def _fmt(v: float, unit: str) -> str:
    digits = {"mm": 1, "mm²": 0, "mL": 2}.get(unit, 2)
    return f"{v:.{digits}f} {unit}"


def assess(criteria: ResponseCriteria, values: Sequence[float], *, any_lesion: Sequence[bool],
           dates: Sequence[str] | None = None) -> Assessment:
    """Classify the last of a patient's time points (oldest first) under ``criteria``.

    Progression is judged from the nadir (the smallest value before the last time point,
    baseline included), response from the baseline, in that order: progression, then complete
    response (no lesion voxel left where the baseline had some), then partial response, else
    stable disease. A change exactly at a threshold meets it.

    Args:
        criteria: the preset.
        values: the criterion's value at each time point (:meth:`ResponseCriteria.value`).
        any_lesion: whether each time point's mask holds any lesion voxel at all.
        dates: labels of the time points for the reasons (default: "time point k").

    Returns:
        The assessment, with readable reasons and the numbers that decided.
    """
    values = tuple(float(v) for v in values)
    if len(values) != len(any_lesion) or not values:
        raise ValueError("assess needs one value and one any_lesion flag per time point, at least one")
    when = list(dates) if dates is not None else [f"time point {k + 1}" for k in range(len(values))]
    unit, base = criteria.unit, values[0]
    thresholds = {"progression_pct": criteria.progression_pct,
                  "progression_min_increase": criteria.progression_min_increase, "partial_pct": criteria.partial_pct}
    common = dict(criteria=criteria.name, unit=unit, values=values, baseline=base, thresholds=thresholds)
    head = [f"criteria {criteria.name}: {criteria.describe()}", f"baseline {when[0]}: {_fmt(base, unit)}"]
    if len(values) == 1:
        return Assessment(category=None, rule="baseline only", **common, reasons=(
            *head, "one time point only: this is the baseline; a response needs a follow-up study"))
    now = values[-1]
    nadir_index = min(range(len(values) - 1), key=lambda k: (values[k], k))
    nadir = values[nadir_index]
    from_nadir, from_base = now - nadir, _pct(now, base)
    pct_nadir = _pct(now, nadir)
    numbers = dict(nadir=nadir, nadir_index=nadir_index, change_from_nadir=from_nadir, change_from_nadir_pct=pct_nadir,
                   change_from_baseline_pct=None if base == 0 else from_base)
    reasons = [*head, f"nadir {when[nadir_index]}: {_fmt(nadir, unit)}", f"now {when[-1]}: {_fmt(now, unit)}"]
    need = f"≥ +{criteria.progression_pct:g} %" + (
        f" and ≥ +{criteria.progression_min_increase:g} {unit}" if criteria.progression_min_increase else "")
    grew = (from_nadir > 0 and pct_nadir >= criteria.progression_pct - _EPS
            and from_nadir >= criteria.progression_min_increase - _EPS)
    pct_text = "new measurable disease" if math.isinf(pct_nadir) else f"{pct_nadir:+.1f} %"
    reasons.append(f"change from the nadir: {pct_text} ({from_nadir:+.1f} {unit}); progression needs {need}: "
                   + ("met" if grew else "not met"))
    if grew:
        return Assessment(category=PROGRESSIVE, rule="progression", **common, **numbers,
                          reasons=(*reasons, f"→ {PROGRESSIVE}"))
    if not any_lesion[-1] and any_lesion[0]:
        return Assessment(category=COMPLETE, rule="complete", **common, **numbers,
                          reasons=(*reasons, f"no lesion voxel remains at {when[-1]} → {COMPLETE}"))
    if not any_lesion[-1] and not any(any_lesion):
        return Assessment(category=STABLE, rule="stable", **common, **numbers, reasons=(
            *reasons, f"no lesion at baseline nor since → {STABLE} (nothing to respond)"))
    if base == 0:
        return Assessment(category=None, rule="not evaluable", **common, **numbers, reasons=(
            *reasons, "no measurable lesion at baseline, so a response cannot be judged under these criteria"))
    shrank = from_base <= -criteria.partial_pct + _EPS
    reasons.append(f"change from baseline: {from_base:+.1f} %; partial response needs ≤ −{criteria.partial_pct:g} %: "
                   + ("met" if shrank else "not met"))
    category, rule = (PARTIAL, "partial") if shrank else (STABLE, "stable")
    return Assessment(category=category, rule=rule, **common, **numbers, reasons=(*reasons, f"→ {category}"))


_PRESETS = Presets(ResponseCriteria, "response criteria")
DEFAULT_CRITERIA = "recist-like"


def register_criteria(criteria: ResponseCriteria, *, replace: bool = False) -> ResponseCriteria:
    """Add a preset under ``criteria.name`` (``replace`` to overwrite one)."""
    return _PRESETS.register(criteria, replace=replace)


def get_criteria(criteria: str | ResponseCriteria | dict[str, Any]) -> ResponseCriteria:
    """A preset by name, a ResponseCriteria as it is, or a dict validated as one.

    Raises:
        ConfigError: no preset of that name (the message lists them), or an invalid dict.
    """
    return _PRESETS.get(criteria)


def list_criteria() -> list[str]:
    """The names of the registered presets."""
    return _PRESETS.names()


register_criteria(ResponseCriteria(
    name="recist-like", title="RECIST 1.1-like", quantity="sum_longest_diameters", max_lesions=5,
    min_longest_diameter_mm=10.0, progression_pct=20.0, progression_min_increase=5.0, partial_pct=30.0))
register_criteria(ResponseCriteria(
    name="rano-like", title="RANO-like", quantity="sum_products", max_lesions=5, min_longest_diameter_mm=10.0,
    min_perpendicular_diameter_mm=10.0, progression_pct=25.0, partial_pct=50.0))
# RANO's 2D thresholds in 3D: a sphere whose product grows 25 % grows 1.25**1.5 - 1 = 40 % in volume; one whose
# product falls 50 % falls 1 - 0.5**1.5 = 65 % (RECIST's 20 %/30 % on a diameter would be +73 %/-66 %).
register_criteria(ResponseCriteria(
    name="volumetric", title="Volumetric", quantity="volume", progression_pct=40.0, partial_pct=65.0))
