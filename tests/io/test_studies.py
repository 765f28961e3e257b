"""Studies in a folder: series grouped by StudyInstanceUID, dated from their DICOM headers."""

from __future__ import annotations

import datetime as dt

import numpy as np

from medsight.io.studies import dicom_datetime, scan_studies
from support.serial_studies import disc_mask, write_study


def test_the_date_comes_from_studydate_then_the_fallbacks_and_the_time_likewise():
    assert dicom_datetime({"StudyDate": "19911119", "StudyTime": "075331.765"}) == (
        dt.datetime(1991, 11, 19, 7, 53, 31, 765000), "StudyDate + StudyTime", True)
    assert dicom_datetime({"StudyDate": "", "AcquisitionDate": "1992.04.02", "SeriesTime": "0915"}) == (
        dt.datetime(1992, 4, 2, 9, 15), "AcquisitionDate + SeriesTime", True)
    assert dicom_datetime({"SeriesDate": "20240101"}) == (dt.datetime(2024, 1, 1), "SeriesDate", False)
    assert dicom_datetime({"StudyDate": "20241341", "StudyTime": "99"}) == (None, None, False)


def test_series_are_grouped_into_their_studies_whatever_the_folders(tmp_path):
    mask = disc_mask((3, 16, 16), radius_px=4, slices=(1,))
    write_study(tmp_path / "x" / "one", mask, date="20240105", time="101500")
    write_study(tmp_path / "x" / "one" / "nested", mask, date="20230105", time=None)
    (tmp_path / "x" / "notes.txt").write_text("not DICOM")
    scan = scan_studies(tmp_path / "x")
    by_date = sorted(scan.studies, key=lambda s: s.acquired)
    assert [s.date for s in by_date] == ["2023-01-05", "2024-01-05"]
    assert [sorted(x.description for x in s.series) for s in by_date] == [["Mask_Tumor", "T1post"]] * 2
    assert by_date[0].time_known is False and by_date[1].acquired.hour == 10
    assert len({s.series[0].frame_of_reference_uid for s in by_date}) == 2
    assert [s["file"].endswith("notes.txt") for s in scan.skipped] == [True]
    assert "SYN-1" not in repr(by_date[0]) and np.all([s.patient.id == "SYN-1" for s in by_date])
