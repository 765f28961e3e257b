"""DICOM pixel values: rescale to HU, MONOCHROME1, colour, compressed transfer syntaxes, multi-frame."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from io_factory import make_slice, ramp_volume, series_dir, write
from pydicom.pixels import convert_color_space
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

import medsight.io as mio


def test_rescale_gives_hounsfield_units_as_float(tmp_path):
    stored = np.array([[0, 1024], [2048, 4095]], np.uint16)
    write(make_slice(stored, slope=1.0, intercept=-1024.0), tmp_path / "ct.dcm")
    image = mio.read(tmp_path / "ct.dcm")
    assert image.meta["units"] == "HU" and image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array[0], [[-1024, 0], [1024, 3071]])
    write(make_slice(stored, slope=0.5, intercept=10.0, modality="MR"), tmp_path / "mr.dcm")
    np.testing.assert_array_equal(mio.read(tmp_path / "mr.dcm").array[0], stored * 0.5 + 10)


def test_monochrome1_is_inverted_within_the_stored_range(tmp_path):
    ds = make_slice(np.array([[0, 100], [4095, 50]], np.uint16), slope=None, intercept=None, modality="MR",
                    photometric="MONOCHROME1")
    ds.BitsStored, ds.HighBit = 12, 11
    write(ds, tmp_path / "m1.dcm")
    image = mio.read(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(image.array[0], [[4095, 3995], [0, 4045]])
    assert image.meta["inverted_monochrome1"] is True


def test_rgb_and_ybr_come_out_as_rgb_channels(tmp_path):
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[2:5, :, 1] = 120
    write(make_slice(rgb, slope=None, intercept=None, modality="OT"), tmp_path / "rgb.dcm")
    image = mio.read(tmp_path / "rgb.dcm")
    assert image.channels == 3 and image.shape == (8, 10)
    np.testing.assert_array_equal(image.array.transpose(1, 2, 0), rgb)
    ds = make_slice(rgb, slope=None, intercept=None, modality="OT")
    ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    write(ds, tmp_path / "ybr.dcm")
    ybr = mio.read(tmp_path / "ybr.dcm")
    assert np.abs(ybr.array.transpose(1, 2, 0).astype(int) - rgb).max() <= 1  # colour conversion rounding


def test_palette_colour_is_expanded_to_rgb(tmp_path):
    ds = make_slice(np.array([[0, 1], [2, 1]], np.uint8), slope=None, intercept=None, modality="OT",
                    photometric="PALETTE COLOR")
    for colour, values in (("Red", [0, 65535, 0]), ("Green", [0, 0, 65535]), ("Blue", [65535, 0, 0])):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [3, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(values, np.uint16).tobytes())
    write(ds, tmp_path / "pal.dcm")
    image = mio.read(tmp_path / "pal.dcm")
    assert image.channels == 3
    np.testing.assert_array_equal(image.array[:, 0, 1], [255, 0, 0])  # index 1 is red
    np.testing.assert_array_equal(image.array[:, 1, 0], [0, 255, 0])  # index 2 is green


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=lambda s: s.name[:12])
def test_lossless_compressed_syntaxes_decode_to_the_original_values(tmp_path, syntax):
    stored = ((ramp_volume(1, 64, 48)[0].astype(np.int32) * 7) % 4000).astype(np.uint16)  # 12-bit
    ds = make_slice(stored, slope=1.0, intercept=-1024.0)
    ds.BitsStored, ds.HighBit = 12, 11
    try:
        ds.compress(syntax, stored)
    except (RuntimeError, NotImplementedError) as exc:
        pytest.skip(f"no {syntax.name} encoder here: {exc}")
    write(ds, tmp_path / "c.dcm")
    image = mio.read(tmp_path / "c.dcm")
    assert image.meta["transfer_syntax"] == syntax
    np.testing.assert_array_equal(image.array[0], stored.astype(np.float32) - 1024)


@pytest.mark.parametrize("flag,exact", [("+e1", True), ("+el", True), ("+eb", False)],
                         ids=["lossless-sv1", "lossless", "baseline"])
def test_jpeg_made_by_dcmtk_decodes(tmp_path, flag, exact):
    if shutil.which("dcmcjpeg") is None:
        pytest.skip("dcmtk's dcmcjpeg is not installed (make peers)")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 3, (64, 48)).astype(np.uint8)
    smooth = np.add.outer(np.arange(64), np.arange(48)).astype(np.uint8) * 2 + noise
    write(make_slice(smooth, slope=None, intercept=None, modality="OT"), tmp_path / "raw.dcm")
    subprocess.run(["dcmcjpeg", flag, str(tmp_path / "raw.dcm"), str(tmp_path / "jpeg.dcm")], check=True,
                   capture_output=True)
    ts = pydicom.dcmread(tmp_path / "jpeg.dcm", stop_before_pixels=True).file_meta.TransferSyntaxUID
    assert ts.is_compressed
    image = mio.read(tmp_path / "jpeg.dcm")
    if exact:
        np.testing.assert_array_equal(image.array[0], smooth)
    else:
        assert np.abs(image.array[0].astype(int) - smooth).mean() < 3  # lossy, but close


def test_enhanced_multiframe_ct_matches_the_series_it_was_made_from(shared_data, tmp_path):
    import highdicom as hd

    folder = series_dir(shared_data, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    series = mio.read(folder)
    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]  # name order, not z order
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=datasets, series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(),
        instance_number=1)
    enhanced.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
    image = mio.read(tmp_path / "enhanced.dcm")
    assert image.shape == series.shape and image.meta["units"] == "HU"
    assert image.spacing == pytest.approx(series.spacing)
    assert image.origin == pytest.approx(series.origin)
    np.testing.assert_allclose(image.direction, series.direction, atol=1e-6)
    np.testing.assert_array_equal(image.array, series.array)


def test_a_series_folder_reads_slices_in_position_order_not_name_order(tmp_path):
    from io_factory import write_series

    volume = ramp_volume(5)
    write_series(tmp_path, volume, step=3.0, names=["e.dcm", "a.dcm", "d.dcm", "b.dcm", "c.dcm"])
    image = mio.read(tmp_path)
    np.testing.assert_array_equal(image.array[0], volume.astype(np.float32) - 1024)
    assert image.spacing[0] == pytest.approx(3.0)


def test_an_oblique_series_has_its_spacing_along_the_normal(tmp_path):
    from io_factory import write_series

    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    iop = (1.0, 0.0, 0.0, 0.0, c, s)  # tilted about x
    write_series(tmp_path, ramp_volume(4), step=6.5, iop=iop)
    image = mio.read(tmp_path)
    assert image.spacing[0] == pytest.approx(6.5, abs=1e-3)
    normal = np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(image.direction[:, 0], normal, atol=1e-6)
    # the z step between slices is 6.5 * cos(20 deg), not the slice spacing
    last = image.affine @ [3, 0, 0, 1]
    assert last[2] - image.origin[2] == pytest.approx(3 * 6.5 * c, abs=1e-2)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_native_pixels_with_fewer_stored_bits_decode_exactly_as_pydicom(tmp_path, dtype):
    stored = np.array([[0x0FFF, 0x0800], [0x7001, -2]], np.int16).astype(dtype)  # garbage above bit 11
    ds = make_slice(stored, slope=None, intercept=None, modality="MR")
    ds.BitsStored, ds.HighBit = 12, 11
    write(ds, tmp_path / "p.dcm")
    expected = pydicom.dcmread(tmp_path / "p.dcm").pixel_array
    image = mio.read(tmp_path / "p.dcm")
    assert image.array.dtype == expected.dtype
    np.testing.assert_array_equal(image.array[0], expected)


def test_colour_jpeg_baseline_from_dcmtk_comes_back_as_rgb(tmp_path):
    if shutil.which("dcmcjpeg") is None:
        pytest.skip("dcmtk's dcmcjpeg is not installed (make peers)")
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[10:30, :, 2] = 150
    write(make_slice(rgb, slope=None, intercept=None, modality="US"), tmp_path / "raw.dcm")
    subprocess.run(["dcmcjpeg", "+eb", str(tmp_path / "raw.dcm"), str(tmp_path / "jpeg.dcm")], check=True,
                   capture_output=True)
    assert pydicom.dcmread(tmp_path / "jpeg.dcm", stop_before_pixels=True).PhotometricInterpretation.startswith("YBR")
    image = mio.read(tmp_path / "jpeg.dcm")
    assert image.channels == 3 and image.meta["color"] == "RGB"
    assert np.abs(image.array.transpose(1, 2, 0).astype(int) - rgb).mean() < 4


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.2"], ids=["implicit-LE", "explicit-BE"])
def test_other_native_transfer_syntaxes_read_the_same(tmp_path, syntax):
    stored = ramp_volume(1, 7, 5)[0]
    ds = make_slice(stored, slope=2.0, intercept=-100.0, spacing=(0.6, 0.9))
    reference = mio.read(write(ds, tmp_path / "le.dcm"))
    ds.file_meta.TransferSyntaxUID = syntax
    if syntax == "1.2.840.10008.1.2.2":  # pydicom writes PixelData bytes as given: make them big endian
        ds.PixelData = stored.astype(">i2").tobytes()
    ds.save_as(tmp_path / "other.dcm", enforce_file_format=True, little_endian=syntax != "1.2.840.10008.1.2.2",
               implicit_vr=syntax == "1.2.840.10008.1.2")
    image = mio.read(tmp_path / "other.dcm")
    assert image.meta["transfer_syntax"] == syntax
    np.testing.assert_array_equal(image.array, reference.array)
    assert image.spacing == reference.spacing and image.origin == reference.origin
    assert image.study_uid == reference.study_uid and image.meta["units"] == "HU"
