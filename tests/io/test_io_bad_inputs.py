"""A folder of broken files: each gets its own clear error, and the good ones still read."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from io_factory import make_slice, ramp_volume, write, write_series
from pydicom.uid import generate_uid

import medsight.io as mio
from medsight.errors import (
    AmbiguousSeriesError,
    CorruptFileError,
    EmptyFileError,
    ImageTooLargeError,
    InvalidValueError,
    MedSightError,
    MissingPixelDataError,
    PixelDataError,
    SeriesError,
    UnsupportedFormatError,
)
from medsight.io.info import describe
from medsight.io.limits import ReadLimits
from medsight.io.series import scan_folder
from support.facts import says


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` 8-bit gray, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def corpus(tmp_path) -> tuple[Path, list[Path], dict[str, type]]:
    """A folder with one good 5-slice series and one broken file of each kind."""
    root = tmp_path / "mixed"
    good = write_series(root / "good", ramp_volume(5), series_uid=generate_uid())
    bad: dict[str, type] = {}
    full = (root / "good" / "002.dcm").read_bytes()
    (root / "truncated.dcm").write_bytes(full[: len(full) - 20])
    bad["truncated.dcm"] = CorruptFileError
    ds = make_slice(np.zeros((4, 4), np.int16))
    del ds.PixelData
    write(ds, root / "no_pixels.dcm")
    bad["no_pixels.dcm"] = MissingPixelDataError
    ds = make_slice(np.zeros((4, 4), np.int16))
    ds.PixelData = ds.PixelData[:-8]
    write(ds, root / "short_pixels.dcm")
    bad["short_pixels.dcm"] = PixelDataError
    (root / "not_dicom.dcm").write_text("patient list, not an image\n" * 20)
    bad["not_dicom.dcm"] = UnsupportedFormatError
    (root / "empty.dcm").write_bytes(b"")
    bad["empty.dcm"] = EmptyFileError
    (root / "bomb.png").write_bytes(png_header(60000, 60000))
    bad["bomb.png"] = ImageTooLargeError
    import nibabel as nib

    data = np.ones((4, 5, 6), np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(root / "nan.nii.gz"))
    bad["nan.nii.gz"] = InvalidValueError
    return root, good, bad


def test_each_bad_file_gets_its_own_error_type_and_message(corpus):
    root, _, bad = corpus
    for name, error in bad.items():
        with pytest.raises(error) as info:
            mio.read(root / name)
        message = str(info.value)
        assert name in message and "\n" not in message  # one line that names the file


def test_the_folder_still_reads_its_good_series_and_lists_the_bad_files(corpus):
    root, good, bad = corpus
    image = mio.read(root)
    assert image.shape == (5, 6, 5)
    np.testing.assert_array_equal(image.array[0], ramp_volume(5).astype(np.float32) - 1024)
    skipped = {Path(s["file"]).name: s for s in image.meta["skipped_files"]}
    for name in ("truncated.dcm", "no_pixels.dcm", "short_pixels.dcm", "not_dicom.dcm", "empty.dcm"):
        assert name in skipped, name
        assert skipped[name]["error"] == bad[name].__name__ or name == "short_pixels.dcm"
    # info reads every image it can and reports every file it skipped, with the reason
    d = describe(root)
    assert [im["shape"] for im in d["images"] if "error" not in im] == [[5, 6, 5], [6, 5, 4]]  # series + NaN NIfTI
    reasons = {Path(s["file"]).name: s["reason"] for s in d["skipped"]}
    assert "60000x60000" in reasons["bomb.png"] or "3600000000" in reasons["bomb.png"]
    assert "truncated" in reasons["truncated.dcm"]


def test_short_pixel_data_is_caught_when_the_series_is_stacked(tmp_path):
    paths = write_series(tmp_path / "s", ramp_volume(4))
    import pydicom

    ds = pydicom.dcmread(paths[2])
    ds.PixelData = ds.PixelData[:-10]
    ds.save_as(paths[2])
    with pytest.raises(MedSightError, match="bytes"):
        mio.read(tmp_path / "s")


def test_missing_slice_is_reported_with_its_position_and_can_be_filled(tmp_path):
    paths = write_series(tmp_path / "s", ramp_volume(6), step=2.0)
    paths[3].unlink()
    with pytest.raises(SeriesError, match="gap") as info:
        mio.read(tmp_path / "s")
    says(info, "4.000 mm", "4.000 and 8.000")  # the gap, and the positions on either side
    filled = mio.read(tmp_path / "s", allow_gaps=True)
    assert filled.shape[0] == 6 and filled.spacing[0] == pytest.approx(2.0)
    assert filled.meta["filled_slices"] == [3]
    np.testing.assert_array_equal(filled.array[0, 4], ramp_volume(6)[4] - 1024.0)  # later slices stay in place


def test_two_series_in_one_folder_are_listed_and_chosen_on_request(tmp_path):
    write_series(tmp_path / "a", ramp_volume(3), description="axial")
    write_series(tmp_path / "b", ramp_volume(4), description="coronal")
    with pytest.raises(AmbiguousSeriesError, match="2 series") as info:
        mio.read(tmp_path)
    assert "'axial'" in str(info.value) and "'coronal'" in str(info.value)
    assert mio.read(tmp_path, series="coronal").shape[0] == 4
    assert mio.read(tmp_path, rule="largest").shape[0] == 4
    uid = scan_folder(tmp_path).series[0].uid
    assert mio.read(tmp_path, series=uid).series_uid == uid


def test_a_slice_with_another_orientation_is_skipped_with_the_reason(tmp_path):
    uid = generate_uid()
    write_series(tmp_path, ramp_volume(4), series_uid=uid)
    odd = make_slice(ramp_volume(1)[0], z=10.0, series_uid=uid, iop=(1, 0, 0, 0, 0, -1), instance=9)
    write(odd, tmp_path / "odd.dcm")
    image = mio.read(tmp_path)
    assert image.shape[0] == 4
    (entry,) = image.meta["skipped_files"]
    assert entry["file"].endswith("odd.dcm") and "inconsistent orientation" in entry["reason"]


def test_uneven_slice_spacing_is_a_problem_not_a_silent_mean(tmp_path):
    uid = generate_uid()
    for k, z in enumerate([0.0, 2.0, 4.0, 5.0, 7.0]):
        write(make_slice(ramp_volume(1)[0], z=z, series_uid=uid, instance=k + 1), tmp_path / f"{k}.dcm")
    with pytest.raises(SeriesError, match="not uniform"):
        mio.read(tmp_path)


def test_duplicate_slices_are_reported_and_stacked_once(tmp_path):
    paths = write_series(tmp_path, ramp_volume(4))
    (tmp_path / "copy.dcm").write_bytes(paths[1].read_bytes())
    image = mio.read(tmp_path)
    assert image.shape[0] == 4
    assert any("duplicate" in s["reason"] for s in image.meta["skipped_files"])


def test_a_missing_ct_slice_within_max_slice_gap_gives_a_result_with_a_warning(tmp_path, monkeypatch):
    """A synthetic CT series (tests/support/series_dicom.py) with one slice gone: an error by
    default, a filled volume with a warning when max_slice_gap tolerates the gap, an error again
    past it; the environment sets the same limit."""
    from support.series_dicom import write_series as write_ct

    vol = np.stack([np.full((4, 5), 100 * k, np.int16) for k in range(8)])
    paths = write_ct(tmp_path / "ct", vol, modality="CT", spacing=(1.5, 0.7, 0.7), rescale_intercept=-1024.0)
    paths[3].unlink()
    with pytest.raises(SeriesError, match="max_slice_gap") as info:
        mio.read(tmp_path / "ct")
    says(info, "3.000 mm", "about 1 missing", "MEDSIGHT_MAX_SLICE_GAP")
    image = mio.read(tmp_path / "ct", limits=ReadLimits(max_slice_gap=2.5))
    assert image.shape == (8, 4, 5) and image.spacing[0] == pytest.approx(1.5) and image.spacing_known
    assert image.meta["filled_slices"] == [3] and image.sop_uids[3] == ""
    assert any("max_slice_gap" in w and "3.000 mm" in w for w in image.meta["warnings"])
    np.testing.assert_array_equal(image.array[0, 4], vol[4] - 1024.0)  # later slices at their positions
    assert float(image.array[0, 3].max()) == float(image.array.min())
    paths[4].unlink()  # now two in a row: a step of 3x
    with pytest.raises(SeriesError, match="about 2 missing"):
        mio.read(tmp_path / "ct", limits=ReadLimits(max_slice_gap=2.5))
    monkeypatch.setenv("MEDSIGHT_MAX_SLICE_GAP", "3.5")
    assert mio.read(tmp_path / "ct").meta["filled_slices"] == [3, 4]


@pytest.mark.parametrize("value", ["0.5", "nan", "wide"])
def test_max_slice_gap_from_the_environment_is_checked(monkeypatch, value):
    from medsight.errors import ConfigError

    monkeypatch.setenv("MEDSIGHT_MAX_SLICE_GAP", value)
    with pytest.raises(ConfigError, match="MEDSIGHT_MAX_SLICE_GAP"):
        ReadLimits.from_env()
