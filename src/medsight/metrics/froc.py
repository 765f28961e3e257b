"""FROC scoring of a nodule detector, the LUNA16 way.

This follows the logic of LUNA16's evaluation script (``noduleCADEvaluationLUNA16.py``, Setio et
al., Medical Image Analysis 42:1-13, 2017); coordinates are world mm, ``(x, y, z)`` as in the
LUNA16 CSVs (:mod:`medsight.metrics.luna16_csv`).

Matching, per scan:

- A finding **hits** a nodule when its centre lies strictly within the nodule's radius
  (``diameter / 2``) of the nodule's centre (Euclidean distance in mm, ``d² < r²``).
- Each nodule counts once: when any finding hits it, it is a true positive scored with the
  highest probability among the findings that hit it; the other findings hitting it are
  ignored (neither TP nor FP, LUNA16's "double detections"). A nodule no finding hits is a
  false negative (it counts in the sensitivity's denominator at every threshold).
- A finding within the radius of two nodules counts as a hit for both (as in LUNA16, which warns
  but keeps both).
- A finding that hits no nodule but hits an excluded annotation (radius 5 mm when its size is
  unknown) is ignored. Every other finding is a false positive.
- Size filter (``min_diameter_mm``, e.g. 6 for "nodules ≥ 6 mm"): nodules smaller than the limit
  are treated as excluded annotations, so a finding on one is ignored, neither TP nor FP (the
  LUNA16 way of not penalising marks on real, but out-of-scope, lesions).
- Scans in ``scans`` with no nodule are valid: their findings are false positives and they count
  in the number of scans. Findings on scans not in ``scans`` are left out (and counted).
- At most ``max_findings_per_scan`` findings per scan are scored (LUNA16 uses 100): those whose
  probability is strictly above the (k+1)-th highest on that scan, so ties at the cut are all
  dropped, as in the reference script.

The FROC curve: findings are ranked by probability; at each distinct probability t the curve has
the point (FPs with p >= t / number of scans, TPs with p >= t / number of nodules), starting at
(0, 0). Sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs per scan is read off the curve by linear
interpolation (``numpy.interp``, as LUNA16; beyond the last point the last sensitivity holds; at
an FP rate where the curve rises vertically the top is taken). CPM is their mean.

Bootstrap (as LUNA16's script): scans are resampled with replacement (the same number of scans),
each drawn scan bringing all its nodules and findings; the curve is recomputed per resample and
the interval is read from the sorted resampled values at indices ``floor(a n)`` and
``floor((1 - a) n)``, ``a = (1 - level) / 2``. Deviations, on purpose: the generator is seeded
(``numpy.random.default_rng(seed)``), the interval is given at the seven FP rates themselves
(LUNA16 reads it off a 10,000-point grid from 1/8 to 8 that misses most of them by < 4e-4 FP/scan)
and for the CPM, and resamples that hold no nodule (sensitivity undefined) are dropped and counted.

Example:
    >>> from medsight.metrics.luna16_csv import Finding, Nodule
    >>> r = froc([Nodule("s1", (0, 0, 0), 10.0)], [Finding("s1", (1, 0, 0), 0.9)], scans=["s1"], n_boot=0)
    >>> r.cpm, r.n_false_positives
    (1.0, 0)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsight.errors import ConfigError, DataError
from medsight.metrics.luna16_csv import Finding, Nodule

__all__ = ["froc", "label_findings", "size_agreement", "FROCResult", "FP_RATES", "LUNA16_MAX_FINDINGS_PER_SCAN"]

logger = logging.getLogger(__name__)

#: The average numbers of false positives per scan at which LUNA16 reads the sensitivity.
FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: LUNA16's cap on the findings scored per scan.
LUNA16_MAX_FINDINGS_PER_SCAN = 100


@dataclass
class _Scan:
    """One scan's scored entries: TP probabilities, FP probabilities, nodules (found or not)."""

    tp: list[float] = field(default_factory=list)
    fp: list[float] = field(default_factory=list)
    n_nodules: int = 0


@dataclass(frozen=True)
class FROCResult:
    """The FROC analysis of one detector on one set of scans.

    Attributes:
        n_scans: scans scored (the FP divisor).
        n_nodules: nodules to find (after the size filter).
        n_detected: nodules hit by at least one finding (at any threshold).
        n_findings: findings scored (after the per-scan cap, on listed scans).
        n_false_positives: findings that hit neither a nodule nor an excluded annotation.
        n_ignored_excluded: findings that hit only excluded annotations (or filtered-out nodules).
        n_ignored_double: findings hitting an already-counted nodule without being its best hit.
        n_findings_unlisted: findings on scans not in the scan list (left out).
        n_findings_capped: findings dropped by the per-scan cap.
        fp_rates: the FP-per-scan rates of ``sensitivities`` (LUNA16's seven).
        sensitivities: sensitivity at each of ``fp_rates``.
        cpm: the competition performance metric: the mean of ``sensitivities``.
        curve_fps: the FROC curve's average FPs per scan, non-decreasing, from 0.
        curve_sensitivity: the curve's sensitivity, same length.
        curve_thresholds: the probability of each curve point (``inf`` for the first).
        missed: the nodules no finding hits.
        min_diameter_mm: the size filter applied, or None.
        ci: the bootstrap interval, or None: ``level``, ``n_boot``, ``n_used``, ``seed``,
            ``sensitivities`` (one ``[low, high]`` per FP rate) and ``cpm`` (``[low, high]``).
        operating_point: at a given threshold (findings with ``p >= threshold``): ``threshold``,
            ``sensitivity``, ``fps_per_scan``, ``true_positives``, ``false_positives``; or None.
    """

    n_scans: int
    n_nodules: int
    n_detected: int
    n_findings: int
    n_false_positives: int
    n_ignored_excluded: int
    n_ignored_double: int
    n_findings_unlisted: int
    n_findings_capped: int
    fp_rates: tuple[float, ...]
    sensitivities: tuple[float, ...]
    cpm: float
    curve_fps: tuple[float, ...]
    curve_sensitivity: tuple[float, ...]
    curve_thresholds: tuple[float, ...]
    missed: tuple[Nodule, ...]
    min_diameter_mm: float | None = None
    ci: dict[str, Any] | None = None
    operating_point: dict[str, Any] | None = None

    def sensitivity_at(self, fps_per_scan: float) -> float:
        """Sensitivity read off the FROC curve at ``fps_per_scan`` average FPs per scan."""
        return float(np.interp(fps_per_scan, self.curve_fps, self.curve_sensitivity))

    def to_dict(self, *, curve: bool = True) -> dict[str, Any]:
        """JSON-ready: counts, ``sensitivities`` keyed by FP rate (``"0.125"``...), ``cpm``, ``ci``,
        ``operating_point``, ``missed`` (``seriesuid``, ``center_mm``, ``diameter_mm``) and, with
        ``curve``, the curve (``fps``, ``sensitivity``, ``thresholds``; the first threshold null)."""
        out: dict[str, Any] = {
            "n_scans": self.n_scans, "n_nodules": self.n_nodules, "n_detected": self.n_detected,
            "n_findings": self.n_findings, "n_false_positives": self.n_false_positives,
            "n_ignored_excluded": self.n_ignored_excluded, "n_ignored_double": self.n_ignored_double,
            "n_findings_unlisted": self.n_findings_unlisted, "n_findings_capped": self.n_findings_capped,
            "min_diameter_mm": self.min_diameter_mm,
            "sensitivities": {f"{r:g}": round(s, 6) for r, s in zip(self.fp_rates, self.sensitivities)},
            "cpm": round(self.cpm, 6),
            "ci": self.ci,
            "operating_point": self.operating_point,
            "missed": [{"seriesuid": n.seriesuid, "center_mm": list(n.center_mm), "diameter_mm": n.diameter_mm}
                       for n in self.missed],
        }
        if curve:
            out["curve"] = {"fps": [round(v, 6) for v in self.curve_fps],
                            "sensitivity": [round(v, 6) for v in self.curve_sensitivity],
                            "thresholds": [None if math.isinf(t) else t for t in self.curve_thresholds]}
        return out


def _cap(findings: list[Finding], k: int | None) -> list[Finding]:
    if k is None or len(findings) <= k:
        return findings
    cut = sorted((f.probability for f in findings), reverse=True)[k]
    return [f for f in findings if f.probability > cut]


def _hits(findings: list[Finding], nodules: Sequence[Nodule]) -> np.ndarray:
    """(findings, nodules) bool: the finding's centre is strictly within the nodule's radius."""
    if not findings or not nodules:
        return np.zeros((len(findings), len(nodules)), dtype=bool)
    f = np.array([x.center_mm for x in findings], dtype=float)
    n = np.array([x.center_mm for x in nodules], dtype=float)
    r = np.array([x.scoring_diameter_mm / 2.0 for x in nodules], dtype=float)
    d2 = ((f[:, None, :] - n[None, :, :]) ** 2).sum(axis=2)
    return d2 < r[None, :] ** 2


def _best_hits(hit: np.ndarray, prob: np.ndarray) -> list[int | None]:
    """For each nodule (a column of ``hit``), the highest-probability finding that hits it, or None."""
    out: list[int | None] = []
    for j in range(hit.shape[1]):
        idx = np.flatnonzero(hit[:, j])
        out.append(int(idx[np.argmax(prob[idx])]) if len(idx) else None)
    return out


def label_findings(findings: Iterable[Finding], nodules: Iterable[Nodule],
                   excluded: Iterable[Nodule] = ()) -> np.ndarray:
    """Each finding of one scan labelled by :func:`froc`'s hit rule: 1 when it hits a nodule,
    -1 when it hits only an excluded annotation (ignored when scored), 0 when it is a false
    positive. For labelling candidates (e.g. to train a second stage) exactly as they are scored.

    Example:
        >>> label_findings([Finding("s", (1, 0, 0), .9), Finding("s", (20, 0, 0), .5)],
        ...                [Nodule("s", (0, 0, 0), 10.0)]).tolist()
        [1, 0]
    """
    findings = list(findings)
    return _labels(_hits(findings, list(nodules)), _hits(findings, list(excluded)))


def _labels(hit: np.ndarray, hit_ignored: np.ndarray) -> np.ndarray:
    """Per finding (a row of the hit matrices): 1 on a nodule, else -1 on an ignored one, else 0."""
    return np.where(hit.any(axis=1), 1, np.where(hit_ignored.any(axis=1), -1, 0)).astype(int)


class _Ranked:
    """TP and FP probabilities ranked once (highest first), so that a curve under any per-entry
    weights (a bootstrap resample's scan counts) is two cumulative sums."""

    def __init__(self, tp: np.ndarray, fp: np.ndarray, tp_scan: np.ndarray | None = None,
                 fp_scan: np.ndarray | None = None) -> None:
        p = np.concatenate([tp, fp])
        order = np.argsort(-p, kind="stable")
        self.p = p[order]
        self.is_tp = np.concatenate([np.ones(len(tp)), np.zeros(len(fp))])[order]
        self.scan = None if tp_scan is None else np.concatenate([tp_scan, fp_scan])[order]
        #: the last entry of each run of equal probabilities: one curve point per distinct probability
        self.last = np.r_[np.flatnonzero(np.diff(self.p) != 0), len(self.p) - 1] if len(self.p) else np.zeros(0, int)

    def curve(self, n_nodules: float, n_scans: int, scan_weight: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """FROC points (fps per scan, sensitivity, threshold), from (0, 0, inf)."""
        w = np.ones(len(self.p)) if scan_weight is None else scan_weight[self.scan]
        ctp = np.cumsum(self.is_tp * w)[self.last]
        cfp = np.cumsum((1 - self.is_tp) * w)[self.last]
        return np.r_[0.0, cfp / n_scans], np.r_[0.0, ctp / n_nodules], np.r_[np.inf, self.p[self.last]]


def _order_ci(values: np.ndarray, level: float) -> list[float]:
    """LUNA16's interval: sorted values at floor(a n) and floor((1 - a) n), a = (1 - level) / 2."""
    v = np.sort(values)
    a = (1.0 - level) / 2.0
    return [round(float(v[int(math.floor(a * len(v)))]), 6), round(float(v[int(math.floor((1 - a) * len(v)))]), 6)]


def _bootstrap(scans: list[_Scan], fp_rates: Sequence[float], *, n_boot: int, level: float,
               seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    tp = np.concatenate([np.asarray(s.tp, dtype=float) for s in scans])
    fp = np.concatenate([np.asarray(s.fp, dtype=float) for s in scans])
    tp_scan = np.repeat(np.arange(len(scans)), [len(s.tp) for s in scans])
    fp_scan = np.repeat(np.arange(len(scans)), [len(s.fp) for s in scans])
    nod = np.array([s.n_nodules for s in scans], dtype=float)
    ranked = _Ranked(tp, fp, tp_scan, fp_scan)
    rows = []
    for _ in range(n_boot):
        count = np.bincount(rng.integers(0, len(scans), size=len(scans)), minlength=len(scans)).astype(float)
        n_nod = float(count @ nod)
        if n_nod == 0:
            continue
        fps, sens, _t = ranked.curve(n_nod, len(scans), count)
        rows.append(np.interp(fp_rates, fps, sens))
    if not rows:
        return {"level": level, "n_boot": n_boot, "n_used": 0, "seed": seed, "sensitivities": None, "cpm": None}
    sens = np.array(rows)
    return {"level": level, "n_boot": n_boot, "n_used": len(rows), "seed": seed,
            "sensitivities": [_order_ci(sens[:, i], level) for i in range(sens.shape[1])],
            "cpm": _order_ci(sens.mean(axis=1), level)}


def froc(annotations: Iterable[Nodule], findings: Iterable[Finding], *, scans: Sequence[str] | None = None,
         excluded: Iterable[Nodule] = (), min_diameter_mm: float | None = None,
         max_findings_per_scan: int | None = LUNA16_MAX_FINDINGS_PER_SCAN, fp_rates: Sequence[float] = FP_RATES,
         threshold: float | None = None, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> FROCResult:
    """Score findings against annotated nodules: FROC curve, sensitivities at FP rates, CPM, CI.

    The rules are in the module docstring.

    Args:
        annotations: the nodules to find (world mm).
        findings: the detector's marks, with probabilities.
        scans: the series UIDs scored (LUNA16's ``seriesuids.csv``); default: every scan with an
            annotation or a finding (a scan with neither cannot be known and must be listed).
        excluded: annotations whose hits are ignored (LUNA16's ``annotations_excluded.csv``).
        min_diameter_mm: score only nodules with ``diameter_mm >= min_diameter_mm``; smaller
            ones become excluded annotations.
        max_findings_per_scan: LUNA16's cap (100); None scores every finding.
        fp_rates: average FPs per scan at which the sensitivity is read (CPM is their mean).
        threshold: also report the operating point of findings with ``probability >= threshold``.
        n_boot: bootstrap resamples of the scans (0: no interval).
        level: the interval's confidence level.
        seed: the bootstrap's seed (same seed, same interval).

    Returns:
        A :class:`FROCResult`.

    Raises:
        DataError: no scans, or no nodule to find on the scans scored.
        ConfigError: a bad argument (``n_boot`` < 0, ``level`` outside (0, 1), empty ``fp_rates``).
    """
    if n_boot < 0:
        raise ConfigError(f"The 'n_boot' parameter of froc must be >= 0. Got {n_boot} instead.")
    if not 0 < level < 1:
        raise ConfigError(f"The 'level' parameter of froc must be in (0, 1). Got {level} instead.")
    if not fp_rates:
        raise ConfigError("The 'fp_rates' parameter of froc must name at least one FP rate. Got none.")
    if max_findings_per_scan is not None and max_findings_per_scan < 1:
        raise ConfigError(f"The 'max_findings_per_scan' parameter of froc must be >= 1 or None. "
                          f"Got {max_findings_per_scan} instead.")
    annotations, findings, excluded = list(annotations), list(findings), list(excluded)
    if scans is None:
        scans = list(dict.fromkeys([n.seriesuid for n in annotations] + [f.seriesuid for f in findings]))
    listed = set(scans)
    if len(listed) != len(scans):
        raise DataError("the scan list names a scan twice")
    if not scans:
        raise DataError("no scans to score: give the scan list (LUNA16's seriesuids.csv)")

    by_scan: dict[str, tuple[list[Nodule], list[Nodule], list[Finding]]] = {s: ([], [], []) for s in scans}
    for n in annotations:
        if n.seriesuid in listed:
            small = min_diameter_mm is not None and n.diameter_mm < min_diameter_mm
            by_scan[n.seriesuid][1 if small else 0].append(n)
    for n in excluded:
        if n.seriesuid in listed:
            by_scan[n.seriesuid][1].append(n)
    unlisted = 0
    for f in findings:
        if f.seriesuid in listed:
            by_scan[f.seriesuid][2].append(f)
        else:
            unlisted += 1
    if unlisted:
        logger.warning("%d findings are on scans not in the scan list; they are left out", unlisted)

    per_scan: list[_Scan] = []
    missed: list[Nodule] = []
    n_scored = n_capped = n_ignored_excluded = n_ignored_double = 0
    for uid in scans:
        nodules, ignore, marks = by_scan[uid]
        kept = _cap(marks, max_findings_per_scan)
        n_capped += len(marks) - len(kept)
        n_scored += len(kept)
        hit, hit_ignored = _hits(kept, nodules), _hits(kept, ignore)
        prob = np.array([f.probability for f in kept], dtype=float)
        s = _Scan(n_nodules=len(nodules))
        best = set()
        for n, i in zip(nodules, _best_hits(hit, prob)):
            if i is None:
                missed.append(n)
            else:
                best.add(i)
                s.tp.append(float(prob[i]))
        labels = _labels(hit, hit_ignored)
        n_ignored_double += int((labels == 1).sum()) - len(best)
        n_ignored_excluded += int((labels == -1).sum())
        s.fp.extend(float(p) for p in prob[labels == 0])
        per_scan.append(s)

    n_nodules = sum(s.n_nodules for s in per_scan)
    if n_nodules == 0:
        raise DataError(f"no nodule to find on the {len(scans)} scans scored"
                        + (f" (with diameter >= {min_diameter_mm:g} mm)" if min_diameter_mm is not None else "")
                        + "; sensitivity is undefined")
    tp = np.array([p for s in per_scan for p in s.tp], dtype=float)
    fp = np.array([p for s in per_scan for p in s.fp], dtype=float)
    fps, sens, thr = _Ranked(tp, fp).curve(n_nodules, len(scans))
    at = tuple(float(v) for v in np.interp(fp_rates, fps, sens))
    op = None
    if threshold is not None:
        k_tp, k_fp = int((tp >= threshold).sum()), int((fp >= threshold).sum())
        op = {"threshold": threshold, "sensitivity": round(k_tp / n_nodules, 6),
              "fps_per_scan": round(k_fp / len(scans), 6), "true_positives": k_tp, "false_positives": k_fp}
    ci = _bootstrap(per_scan, fp_rates, n_boot=n_boot, level=level, seed=seed) if n_boot else None
    return FROCResult(
        n_scans=len(scans), n_nodules=n_nodules, n_detected=len(tp), n_findings=n_scored,
        n_false_positives=len(fp), n_ignored_excluded=n_ignored_excluded, n_ignored_double=n_ignored_double,
        n_findings_unlisted=unlisted, n_findings_capped=n_capped, fp_rates=tuple(float(r) for r in fp_rates),
        sensitivities=at, cpm=float(np.mean(at)), curve_fps=tuple(float(v) for v in fps),
        curve_sensitivity=tuple(float(v) for v in sens), curve_thresholds=tuple(float(v) for v in thr),
        missed=tuple(missed), min_diameter_mm=min_diameter_mm, ci=ci, operating_point=op)


def size_agreement(annotations: Iterable[Nodule], findings: Iterable[Finding], *, threshold: float | None = None,
                   tolerance: float = 0.3) -> dict[str, Any]:
    """How well the detector measures what it finds: each nodule's matched finding (the
    highest-probability finding whose centre is within its radius, as :func:`froc` scores it;
    with ``threshold``, only findings at or above it) against the annotated diameter.

    Findings without a diameter are not matched. Returns ``n_matched``, the relative error
    ``(found - annotated) / annotated`` as ``median`` and ``p10``/``p90``, the
    ``median_absolute`` relative error, and ``within`` (the fraction within ``tolerance``,
    0.3 = 30 %, issue 10's criterion on LIDC-IDRI-0001); the statistics are None when nothing
    is matched.
    """
    by_scan: dict[str, list[Finding]] = {}
    for f in findings:
        if f.diameter_mm is not None and (threshold is None or f.probability >= threshold):
            by_scan.setdefault(f.seriesuid, []).append(f)
    nodules: dict[str, list[Nodule]] = {}
    for n in annotations:
        if n.diameter_mm > 0:
            nodules.setdefault(n.seriesuid, []).append(n)
    errors: list[float] = []
    for uid, mine in nodules.items():
        marks = by_scan.get(uid, [])
        prob = np.array([f.probability for f in marks], dtype=float)
        for n, i in zip(mine, _best_hits(_hits(marks, mine), prob)):
            if i is not None:
                errors.append((float(marks[i].diameter_mm) - n.diameter_mm) / n.diameter_mm)  # type: ignore[arg-type]
    out: dict[str, Any] = {"n_matched": len(errors), "threshold": threshold, "tolerance": tolerance}
    if not errors:
        return {**out, **dict.fromkeys(("median", "p10", "p90", "median_absolute", "within"))}
    e = np.array(errors, dtype=float)
    return {**out, "median": round(float(np.median(e)), 4), "p10": round(float(np.percentile(e, 10)), 4),
            "p90": round(float(np.percentile(e, 90)), 4),
            "median_absolute": round(float(np.median(np.abs(e))), 4),
            "within": round(float(np.mean(np.abs(e) <= tolerance)), 4)}
