"""Small synthetic FROC examples shared by the scoring and report tests."""

from __future__ import annotations

from medsight.metrics.luna16_csv import Finding, Nodule


def N(uid, c, d):
    """A nodule of scan ``uid`` at ``c`` (mm) of diameter ``d`` mm."""
    return Nodule(uid, tuple(float(v) for v in c), float(d))


def F(uid, c, p):
    """A finding of scan ``uid`` at ``c`` (mm) with probability ``p``."""
    return Finding(uid, tuple(float(v) for v in c), float(p))


def three_scans():
    """s1: two nodules, one FP; s2: one nodule, one FP; s3: no nodule, one FP.

    Ranked: 0.95 FP, 0.9 TP, 0.8 FP, 0.7 TP, 0.6 FP, 0.5 TP; 3 scans, 3 nodules. Curve:
    (0,0) (1/3,0) (1/3,1/3) (2/3,1/3) (2/3,2/3) (1,2/3) (1,1).
    """
    nodules = [N("s1", (0, 0, 0), 10), N("s1", (50, 0, 0), 6), N("s2", (0, 0, 0), 8)]
    findings = [F("s1", (1, 0, 0), 0.9), F("s1", (51, 0, 0), 0.5), F("s1", (100, 0, 0), 0.8),
                F("s2", (0, 0, 0.5), 0.7), F("s2", (30, 30, 30), 0.6), F("s3", (0, 0, 0), 0.95)]
    return nodules, findings
