"""MetaImage (.mhd + .raw/.zraw, .mha): reading, geometry, refusals, and the write_mhd round trip.

Synthetic headers and volumes built here, except the last test, which converts the real
LIDC-IDRI-0001 slab (skipped when ../shared/data is absent).
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import numpy as np
import pytest
from io_factory import series_dir

import medsight.io as mio
from medsight.errors import (
    CorruptFileError,
    ImageTooLargeError,
    InvalidValueError,
    PixelDataError,
    UnsafePathError,
    UnsupportedFormatError,
)
from medsight.io.image import Image
from medsight.io.limits import ReadLimits
from medsight.io.metaimage import write_mhd

# A header as LUNA16 ships it (key order and values of a real one; the data file renamed).
LUNA_HEADER = """ObjectType = Image
NDims = 3
BinaryData = True
BinaryDataByteOrderMSB = False
CompressedData = False
TransformMatrix = 1 0 0 0 1 0 0 0 1
Offset = -195 -195 -378
CenterOfRotation = 0 0 0
AnatomicalOrientation = RAI
ElementSpacing = 0.7617189884185791 0.7617189884185791 2.5
DimSize = 5 4 3
ElementType = MET_SHORT
ElementDataFile = scan.raw
"""


def luna_volume() -> np.ndarray:
    """(z, y, x) = (3, 4, 5) int16 whose value says its index: 100 z + 10 y + x."""
    z, y, x = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    return (100 * z + 10 * y + x - 1000).astype(np.int16)


def write_luna(tmp, header: str = LUNA_HEADER, data: bytes | None = None, name: str = "scan.mhd"):
    (tmp / name).write_text(header)
    (tmp / "scan.raw").write_bytes(luna_volume().astype("<i2").tobytes() if data is None else data)
    return tmp / name


def oblique(angle: float = 0.4) -> np.ndarray:
    """An Image direction (columns z, y, x in LPS) rotated about two axes: no axis is along x, y or z."""
    a, b = angle, angle / 2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    xyz = rz @ rx  # columns: the x, y, z axes
    return xyz[:, ::-1]


def test_a_luna16_header_reads_in_image_order_with_its_geometry(tmp_path):
    path = write_luna(tmp_path)
    assert mio.sniff_format(path) == "metaimage"
    image = mio.read(path)
    assert image.shape == (3, 4, 5) and image.channels == 1 and image.array.dtype == np.int16
    np.testing.assert_array_equal(image.array[0], luna_volume())  # x fastest in the file, so (z, y, x)
    assert image.spacing == pytest.approx((2.5, 0.7617189884185791, 0.7617189884185791))
    assert image.origin == pytest.approx((-195, -195, -378))
    # array axis z goes +S, y goes +P, x goes +L: the identity TransformMatrix, in LPS as ITK has it
    np.testing.assert_allclose(image.direction, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    assert image.modality == "OT"  # LUNA16 headers carry no Modality key
    assert image.meta["spacing_known"] is True and image.spacing_known
    assert image.meta["anatomical_orientation"] == "RAI" and "warnings" not in image.meta
    # voxel (z=2, y=1, x=3) sits at Offset + spacing * (x, y, z) in LPS, as SimpleITK computes it
    world = image.affine @ np.array([2, 1, 3, 1.0])
    assert world[:3] == pytest.approx([-195 + 3 * 0.7617189884185791, -195 + 0.7617189884185791, -378 + 5.0])


def test_modality_byte_order_element_types_and_mha(tmp_path):
    header = LUNA_HEADER.replace("BinaryDataByteOrderMSB = False", "BinaryDataByteOrderMSB = True")
    header = header.replace("ElementType = MET_SHORT", "Modality = MET_MOD_CT\nElementType = MET_SHORT")
    image = mio.read(write_luna(tmp_path, header, luna_volume().astype(">i2").tobytes()))
    np.testing.assert_array_equal(image.array[0], luna_volume())
    assert image.modality == "CT" and image.array.dtype.byteorder in ("=", "|", "<")
    assert mio.read(tmp_path / "scan.mhd", modality="MR").modality == "MR"  # a caller may say
    for met, dt in [("MET_UCHAR", "u1"), ("MET_CHAR", "i1"), ("MET_USHORT", "<u2"), ("MET_INT", "<i4"),
                    ("MET_UINT", "<u4"), ("MET_FLOAT", "<f4"), ("MET_DOUBLE", "<f8")]:
        vol = (luna_volume() % 100 + 1).astype(dt)
        body = LUNA_HEADER.replace("MET_SHORT", met).replace("ElementDataFile = scan.raw", "ElementDataFile = LOCAL")
        (tmp_path / "one.mha").write_bytes(body.encode() + vol.tobytes())
        image = mio.read(tmp_path / "one.mha")
        assert image.array.dtype == np.dtype(dt).newbyteorder("=")
        np.testing.assert_array_equal(image.array[0], vol)


def test_compressed_data_is_inflated(tmp_path):
    header = LUNA_HEADER.replace("CompressedData = False", "CompressedData = True")
    path = write_luna(tmp_path, header, zlib.compress(luna_volume().astype("<i2").tobytes()))
    np.testing.assert_array_equal(mio.read(path).array[0], luna_volume())


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name", ["vol.mhd", "vol.mha"])
def test_write_then_read_keeps_array_and_oblique_geometry(tmp_path, name, compress):
    rng = np.random.default_rng(0)
    arr = rng.normal(-500, 300, (1, 7, 6, 5)).astype(np.float32)
    image = Image(arr, spacing=(1.25, 0.6, 0.7), origin=(-101.5, 33.25, -250.0), direction=oblique(), modality="CT")
    path = write_mhd(image, tmp_path / name, compress=compress)
    if name.endswith(".mhd"):
        assert (tmp_path / ("vol.zraw" if compress else "vol.raw")).is_file()
    back = mio.read(path)
    np.testing.assert_array_equal(back.array, arr)
    assert back.same_geometry(image, atol=1e-9) and back.modality == "CT"
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-9)


def test_a_bright_voxel_lands_at_its_world_position(tmp_path):
    """Build the volume from a world point, write it, read it: the index maps back to that point."""
    spacing, origin, direction = (2.0, 0.8, 0.9), (-120.0, 40.0, -300.0), oblique(0.3)
    target = np.array([-113.0, 47.5, -285.0])  # LPS mm
    affine = Image(np.zeros((1, 12, 16, 16)), spacing=spacing, origin=origin, direction=direction).affine
    index = np.rint(np.linalg.solve(affine, [*target, 1.0])[:3]).astype(int)
    assert np.all(index >= 0) and np.all(index < (12, 16, 16))
    arr = np.full((1, 12, 16, 16), -1000, np.int16)
    arr[(0, *index)] = 400
    write_mhd(Image(arr, spacing=spacing, origin=origin, direction=direction), tmp_path / "dot.mhd")
    back = mio.read(tmp_path / "dot.mhd")
    found = np.argwhere(back.array[0] == 400)
    assert found.tolist() == [index.tolist()]
    world = (back.affine @ [*found[0], 1.0])[:3]
    assert np.linalg.norm(world - target) <= 0.5 * np.linalg.norm(np.asarray(spacing))  # the voxel holding it
    np.testing.assert_allclose(world, (affine @ [*index, 1.0])[:3], atol=1e-9)


def test_2d_and_4d_images(tmp_path):
    flat = Image(np.arange(12, dtype=np.uint8).reshape(1, 3, 4), spacing=(0.5, 0.25), origin=(1.0, 2.0, 0.0))
    back = mio.read(write_mhd(flat, tmp_path / "flat.mha"))
    assert back.n_spatial == 2 and back.same_geometry(flat)
    np.testing.assert_array_equal(back.array, flat.array)
    multi = Image(np.arange(2 * 24, dtype=np.int16).reshape(2, 2, 3, 4), spacing=(3.0, 1.0, 1.0))
    back = mio.read(write_mhd(multi, tmp_path / "multi.mhd"))
    assert back.channels == 2 and back.same_geometry(multi)
    np.testing.assert_array_equal(back.array, multi.array)


def test_missing_spacing_is_marked_unknown(tmp_path):
    header = "\n".join(line for line in LUNA_HEADER.splitlines() if not line.startswith("ElementSpacing"))
    image = mio.read(write_luna(tmp_path, header + "\n"))
    assert image.spacing == (1.0, 1.0, 1.0)
    assert image.meta["spacing_known"] is False and not image.spacing_known
    assert any("ElementSpacing" in w for w in image.meta["warnings"])


def test_orientation_label_that_contradicts_the_matrix_is_warned(tmp_path):
    header = LUNA_HEADER.replace("TransformMatrix = 1 0 0 0 1 0 0 0 1", "TransformMatrix = -1 0 0 0 1 0 0 0 1")
    image = mio.read(write_luna(tmp_path, header))
    assert image.direction[0, 2] == -1.0  # the matrix decides: array x goes -x in LPS
    assert any("AnatomicalOrientation RAI contradicts" in w and "LAI" in w for w in image.meta["warnings"])


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg and "scan.mhd" in msg, msg
    for w in words:
        assert w in msg, msg


def test_a_missing_raw_is_a_clear_error(tmp_path):
    path = write_luna(tmp_path)
    (tmp_path / "scan.raw").unlink()
    with pytest.raises(CorruptFileError) as info:
        mio.read(path)
    _one_line(info, "scan.raw", "missing")


def test_a_short_raw_is_a_clear_error(tmp_path):
    path = write_luna(tmp_path, data=luna_volume().astype("<i2").tobytes()[:-7])
    with pytest.raises(PixelDataError) as info:
        mio.read(path)
    _one_line(info, "113 bytes", "120", "truncated", "5x4x3")


def test_corrupt_zlib_is_a_clear_error(tmp_path):
    header = LUNA_HEADER.replace("CompressedData = False", "CompressedData = True")
    good = zlib.compress(luna_volume().astype("<i2").tobytes())
    with pytest.raises(PixelDataError) as info:
        mio.read(write_luna(tmp_path, header, good[:2] + b"\xff" * 20 + good[22:]))
    _one_line(info, "damaged", "zlib")
    with pytest.raises(PixelDataError) as info:  # a stream cut short
        mio.read(write_luna(tmp_path, header, good[: len(good) // 2]))
    _one_line(info, "truncated")


@pytest.mark.parametrize("change, error, words", [
    (("MET_SHORT", "MET_FLOAT16"), UnsupportedFormatError, ["MET_FLOAT16", "MET_SHORT"]),
    (("NDims = 3", "NDims = 5"), UnsupportedFormatError, ["NDims is 5", "2, 3 or 4"]),
    (("NDims = 3", "NDims = 1"), UnsupportedFormatError, ["NDims is 1"]),
    (("ElementSpacing = 0.7617189884185791", "ElementSpacing = 0"), CorruptFileError, ["ElementSpacing", "positive"]),
    (("ElementSpacing = 0.7617189884185791", "ElementSpacing = nan"), CorruptFileError, ["ElementSpacing"]),
    (("ElementSpacing = 0.7617189884185791", "ElementSpacing = -1"), CorruptFileError, ["ElementSpacing"]),
    (("DimSize = 5 4 3", "DimSize = 5 4"), CorruptFileError, ["DimSize", "3 values"]),
    (("scan.raw", "/etc/passwd"), UnsafePathError, ["absolute"]),
    (("scan.raw", "../scan.raw"), UnsafePathError, [".."]),
    (("scan.raw", "sub/../../scan.raw"), UnsafePathError, [".."]),
    (("scan.raw", "LIST"), UnsupportedFormatError, ["LIST"]),
    (("scan.raw", "slice%03d.raw 1 3 1"), UnsupportedFormatError, ["pattern"]),
    (("ObjectType = Image", "ObjectType = Mesh"), UnsupportedFormatError, ["Mesh"]),
])
def test_bad_headers_are_refused_with_a_clear_error(tmp_path, change, error, words):
    (tmp_path / "outside.raw").write_bytes(b"\x00" * 120)
    path = write_luna(tmp_path, LUNA_HEADER.replace(*change))
    with pytest.raises(error) as info:
        mio.read(path)
    _one_line(info, *words)


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data.raw").write_bytes(luna_volume().astype("<i2").tobytes())
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "scan.raw").symlink_to(outside / "data.raw")
    (tmp_path / "case" / "scan.mhd").write_text(LUNA_HEADER)
    with pytest.raises(UnsafePathError, match="outside"):
        mio.read(tmp_path / "case" / "scan.mhd")


def test_the_memory_budget_is_checked_from_the_header_before_reading(tmp_path):
    header = LUNA_HEADER.replace("DimSize = 5 4 3", "DimSize = 512 512 2100")
    path = write_luna(tmp_path, header)  # a 120-byte raw: the refusal comes from the header alone
    with pytest.raises(ImageTooLargeError) as info:
        mio.read(path, limits=ReadLimits(max_decoded_bytes=2**30))
    _one_line(info, "2100x512x512", "1,101,004,800", "max_decoded_bytes", "before decoding")
    # a zlib bomb: the header's size bounds what is inflated
    bomb = zlib.compress(b"\x00" * (64 * 2**20))
    header = LUNA_HEADER.replace("CompressedData = False", "CompressedData = True")
    path = write_luna(tmp_path, header, bomb)
    assert mio.read(path).shape == (3, 4, 5)  # only the declared 120 bytes were inflated


def test_nan_in_float_data_is_refused_unless_allowed(tmp_path):
    vol = luna_volume().astype("<f4")
    vol[1, 2, 3] = np.nan
    path = write_luna(tmp_path, LUNA_HEADER.replace("MET_SHORT", "MET_FLOAT"), vol.tobytes())
    with pytest.raises(InvalidValueError, match="1 voxels"):
        mio.read(path)
    assert np.isnan(mio.read(path, allow_nan=True).array[0, 1, 2, 3])


def test_a_raw_file_alone_is_not_an_image(tmp_path):
    write_luna(tmp_path)
    with pytest.raises(UnsupportedFormatError, match="MetaImage"):
        mio.read(tmp_path / "scan.raw")


@pytest.mark.realdata
def test_lidc_slab_as_metaimage_keeps_geometry_and_the_luna16_nodule(shared_data, tmp_path):
    """Real data: the LIDC-IDRI-0001 slab written as .mhd reads back equal, and its LUNA16
    nodule (world mm in annotations.csv) falls inside the slab, at the same voxel both ways."""
    folder = series_dir(shared_data, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    series = mio.read(folder)
    back = mio.read(write_mhd(series, tmp_path / "lidc.mhd", compress=True))
    np.testing.assert_array_equal(back.array, series.array)
    assert back.same_geometry(series, atol=1e-9) and back.modality == "CT"
    rows = list(csv.DictReader(open(shared_data("lidc_idri_nodule_slabs/luna16/annotations.csv"))))
    nodule = [r for r in rows if r["seriesuid"] == series.series_uid]
    assert nodule, "LIDC-IDRI-0001's series is in annotations.csv"
    point = [float(nodule[0][k]) for k in ("coordX", "coordY", "coordZ")]
    for image in (series, back):
        index = np.linalg.solve(image.affine, [*point, 1.0])[:3]
        assert np.all(index > -0.5) and np.all(index < np.asarray(image.shape) - 0.5), index
    np.testing.assert_allclose(np.linalg.solve(back.affine, [*point, 1.0]),
                               np.linalg.solve(series.affine, [*point, 1.0]), atol=1e-9)


def test_info_lists_a_metaimage_in_a_folder_and_its_raw_as_skipped(tmp_path):
    from medsight.io.info import describe

    write_luna(tmp_path)
    d = describe(tmp_path)
    assert [im["shape"] for im in d["images"]] == [[3, 4, 5]] and d["images"][0]["format"] == "metaimage"
    assert [Path(s["file"]).name for s in d["skipped"]] == ["scan.raw"]
