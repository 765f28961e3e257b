"""The trend of a patient's results: direction and size of the change."""

from __future__ import annotations

from medsight.response import trend


def test_trend_direction():
    assert trend([0.2, 0.5, 0.7])["direction"] == "rising"
    assert trend([0.7, 0.3])["direction"] == "falling"
    assert trend([0.5, 0.52])["direction"] == "stable"
    assert trend([])["n"] == 0


def test_trend_reports_first_last_and_change():
    t = trend([8.11, 20.92], tolerance=1.0)
    assert (t["n"], t["first"], t["last"], t["direction"]) == (2, 8.11, 20.92, "rising")
    assert abs(t["delta"] - 12.81) < 1e-9 and t["values"] == [8.11, 20.92]
