"""LUNA16 CSV files: reading annotations, excluded annotations, series lists and findings, with
clear errors for bad content; findings round-trip. Synthetic files in tmp_path."""

from __future__ import annotations

import pytest

from medsight.errors import DataError, MedSightError
from medsight.metrics.luna16_csv import (
    Finding,
    read_annotations,
    read_excluded,
    read_findings,
    read_negatives,
    read_seriesuids,
    write_findings,
)

HEADER = "seriesuid,coordX,coordY,coordZ,diameter_mm\n"


def _write(tmp_path, text, name="f.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_annotations_are_read_in_xyz_mm_with_their_diameter(tmp_path):
    p = _write(tmp_path, "\ufeff" + HEADER + "1.2.3,-128.5,-175.25,-298.0,5.65\n1.2.4,1,2,3,10\n")
    a = read_annotations(p)
    assert [(n.seriesuid, n.center_mm, n.diameter_mm) for n in a] == [
        ("1.2.3", (-128.5, -175.25, -298.0), 5.65), ("1.2.4", (1.0, 2.0, 3.0), 10.0)]


def test_excluded_annotations_allow_unknown_size_and_score_it_as_10_mm(tmp_path):
    e = read_excluded(_write(tmp_path, HEADER + "1.2.3,0,0,0,-1\n"))
    assert e[0].diameter_mm == -1 and e[0].scoring_diameter_mm == 10.0
    with pytest.raises(DataError, match="diameter_mm must be > 0"):
        read_annotations(_write(tmp_path, HEADER + "1.2.3,0,0,0,-1\n"))


@pytest.mark.parametrize(("body", "match"), [
    ("seriesuid,coordX,coordY,diameter_mm\n1.2,0,0,4\n", "missing column.*coordZ"),
    (HEADER + "1.2,0,abc,0,4\n", "line 2: column coordY must be a number; got 'abc'"),
    (HEADER + "1.2,0,0,nan,4\n", "line 2: column coordZ must be a finite number"),
    (HEADER + "1.2,0,0,0,inf\n", "finite"),
    (HEADER + ",0,0,0,4\n", "seriesuid is empty"),
    (HEADER + "1.2,0,0,0,\n", "diameter_mm must be a number"),
])
def test_bad_annotation_files_raise_a_data_error_naming_line_and_column(tmp_path, body, match):
    p = _write(tmp_path, body)
    with pytest.raises(DataError, match=match) as info:
        read_annotations(p)
    assert isinstance(info.value, MedSightError) and str(p) in str(info.value)


def test_findings_without_diameter_read_and_round_trip(tmp_path):
    p = _write(tmp_path, "seriesuid,coordX,coordY,coordZ,probability\n1.2,0.1,0.2,0.3,0.75\n1.2,1,2,3,-2.5\n")
    f = read_findings(p)
    assert f[0] == Finding("1.2", (0.1, 0.2, 0.3), 0.75, None) and f[1].probability == -2.5
    out = write_findings(tmp_path / "out.csv", [*f, Finding("1.3", (1 / 3, 2.0, -7.125), 0.1 + 0.2, 6.5)])
    assert out.read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,diameter_mm,probability"
    assert read_findings(out) == [*f, Finding("1.3", (1 / 3, 2.0, -7.125), 0.1 + 0.2, 6.5)]


def test_findings_need_a_finite_probability(tmp_path):
    with pytest.raises(DataError, match="missing column.*probability"):
        read_findings(_write(tmp_path, HEADER + "1.2,0,0,0,4\n"))
    with pytest.raises(DataError, match="probability must be a finite number"):
        read_findings(_write(tmp_path, "seriesuid,coordX,coordY,coordZ,probability\n1.2,0,0,0,nan\n"))


def test_series_list_has_no_header_and_no_repeats(tmp_path):
    assert read_seriesuids(_write(tmp_path, "1.2.3\n1.2.4\n\n")) == ["1.2.3", "1.2.4"]
    assert read_seriesuids(_write(tmp_path, "seriesuid\n1.2.3\n")) == ["1.2.3"]
    with pytest.raises(DataError, match="listed twice"):
        read_seriesuids(_write(tmp_path, "1.2.3\n1.2.3\n"))
    with pytest.raises(DataError, match="empty"):
        read_seriesuids(_write(tmp_path, "\n"))
    with pytest.raises(DataError, match="cannot read"):
        read_seriesuids(tmp_path / "absent.csv")


def test_negatives_are_the_class_0_rows_of_a_candidates_file(tmp_path):
    p = _write(tmp_path, "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,0\n1.2.3,4,5,6,1\n1.2.4,-7,8.5,9,0\n")
    n = read_negatives(p)
    assert [(x.seriesuid, x.center_mm, x.diameter_mm) for x in n] == [
        ("1.2.3", (1.0, 2.0, 3.0), -1.0), ("1.2.4", (-7.0, 8.5, 9.0), -1.0)]
    with pytest.raises(DataError, match="line 2: column class must be 0 or 1"):
        read_negatives(_write(tmp_path, "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,2\n", "bad.csv"))
    with pytest.raises(DataError, match="missing column"):
        read_negatives(_write(tmp_path, HEADER + "1.2.3,1,2,3,4\n", "nocls.csv"))
