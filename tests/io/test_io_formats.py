"""NIfTI (and the DICOM -> NIfTI round trip), PNG/JPEG/TIFF, NumPy, zip archives, sniffing."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from io_factory import ramp_volume, series_dir, write_series

import medsight.io as mio
from medsight.errors import (
    CorruptFileError,
    ImageTooLargeError,
    InvalidValueError,
    UnsafePathError,
    UnsupportedFormatError,
)
from medsight.io.limits import ReadLimits


def assert_same_image(a, b):
    assert a.shape == b.shape
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing == pytest.approx(b.spacing, abs=1e-5)
    assert a.origin == pytest.approx(b.origin, abs=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-6)


@pytest.mark.parametrize("sub", ["lidc_idri_nodule_slabs/LIDC-IDRI-0001",
                                 "brain_tumor_progression/PGBM-001/1991-11-19/11-T1post-03326"])
def test_dicom_series_to_nifti_and_back_keeps_array_and_geometry(shared_data, tmp_path, sub):
    folder = series_dir(shared_data, sub)
    image = mio.read(folder)
    back = mio.read(mio.write_nifti(image, tmp_path / "x.nii.gz"))
    assert_same_image(back, image)


def test_nifti_affine_is_ras_for_other_tools(tmp_path):
    import nibabel as nib

    write_series(tmp_path / "s", ramp_volume(3), step=2.0, origin_xy=(-10.0, -20.0))
    image = mio.read(tmp_path / "s")
    nimg = nib.load(str(mio.write_nifti(image, tmp_path / "x.nii")))
    # voxel (i=col 0, j=row 0, k=slice 0) is at LPS (-10, -20, 0), i.e. RAS (10, 20, 0)
    np.testing.assert_allclose(nimg.affine[:3, 3], [10.0, 20.0, 0.0])
    assert nib.aff2axcodes(nimg.affine) == ("L", "P", "S")
    assert nimg.shape == (5, 6, 3)


def test_nifti_with_nan_is_refused_unless_allowed(tmp_path):
    import nibabel as nib

    data = np.zeros((3, 4, 5), np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.7, 2.0, 1.0])), str(tmp_path / "n.nii.gz"))
    with pytest.raises(InvalidValueError, match="1 voxels are NaN"):
        mio.read(tmp_path / "n.nii.gz")
    image = mio.read(tmp_path / "n.nii.gz", allow_nan=True)
    assert image.spacing == pytest.approx((2.0, 0.7, 0.5))


@pytest.mark.parametrize("dtype,mode", [(np.uint8, "L"), (np.uint16, "I;16")])
@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_grayscale_rasters_keep_their_bit_depth(tmp_path, dtype, mode, ext):
    from PIL import Image as PILImage

    arr = (np.arange(12 * 10).reshape(12, 10) * (300 if dtype == np.uint16 else 2)).astype(dtype)
    PILImage.fromarray(arr).save(tmp_path / f"g.{ext}")
    image = mio.read(tmp_path / f"g.{ext}")
    assert image.array.dtype == dtype and image.shape == (12, 10) and image.channels == 1
    np.testing.assert_array_equal(image.array[0], arr)
    assert image.meta["spacing_known"] is False


@pytest.mark.parametrize("ext", ["png", "jpg", "tif"])
def test_rgb_rasters_are_channel_first(tmp_path, ext):
    from PIL import Image as PILImage

    arr = np.zeros((16, 20, 3), np.uint8)
    arr[..., 2] = 180
    PILImage.fromarray(arr).save(tmp_path / f"c.{ext}")
    image = mio.read(tmp_path / f"c.{ext}")
    assert image.channels == 3 and image.shape == (16, 20)
    assert np.abs(image.array[2].astype(int) - 180).max() <= 2 and image.array[0].max() <= 2


def test_content_decides_the_format_not_the_name(tmp_path, shared_data):
    from PIL import Image as PILImage

    PILImage.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "looks_like.dcm").write_bytes((tmp_path / "x.png").read_bytes())
    assert mio.read(tmp_path / "looks_like.dcm").meta["format"] == "png"
    ct = shared_data("pydicom_testfiles/CT_small.dcm")
    (tmp_path / "scan.png").write_bytes(ct.read_bytes())
    assert mio.read(tmp_path / "scan.png").modality == "CT"
    assert mio.sniff_format(tmp_path / "scan.png") == "dicom"


def test_numpy_files_read_without_pickles(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((3, 4, 5), np.int16))
    assert mio.read(tmp_path / "v.npy").shape == (3, 4, 5)
    np.savez(tmp_path / "v.npz", image=np.ones((4, 5), np.float32), spacing=np.array([0.5, 0.25]))
    image = mio.read(tmp_path / "v.npz")
    assert image.shape == (4, 5) and image.spacing == (0.5, 0.25)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CorruptFileError, match="pickle"):
        mio.read(tmp_path / "obj.npy")


def test_pixel_limit_applies_before_decoding(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((10, 10, 10), np.uint8))
    with pytest.raises(ImageTooLargeError, match="10x10x10 = 1,000 pixels"):
        mio.read(tmp_path / "v.npy", limits=ReadLimits(max_pixels=999))
    with pytest.raises(ImageTooLargeError, match="bytes"):
        mio.read(tmp_path / "v.npy", limits=ReadLimits(max_file_bytes=100))


def test_a_zipped_study_reads_and_its_sources_can_be_reopened(shared_data, tmp_path):
    from medsight.io.dicom_out import source_datasets

    folder = series_dir(shared_data, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    with zipfile.ZipFile(tmp_path / "study.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.glob("*.dcm")):
            zf.write(f, f"study/series/{f.name}")
    image = mio.read(tmp_path / "study.zip")
    assert_same_image(image, mio.read(folder))
    assert image.meta["source_files"][0].startswith(str(tmp_path / "study.zip") + "::study/series/")
    assert [d.SOPInstanceUID for d in source_datasets(image)] == list(image.sop_uids)


@pytest.mark.parametrize("name,make,error,message", [
    ("dotdot", lambda zf: zf.writestr("../escape.dcm", b"x"), UnsafePathError, "'..'"),
    ("absolute", lambda zf: zf.writestr("/etc/evil.dcm", b"x"), UnsafePathError, "absolute"),
    ("link", lambda zf: zf.writestr(_link_info("link.dcm"), "/etc/passwd"), UnsafePathError, "symbolic link"),
    ("bomb", lambda zf: zf.writestr("big.dcm", b"\0" * (8 << 20)), ImageTooLargeError, "zip bomb"),
])
def test_hostile_archives_are_refused_before_unpacking(tmp_path, name, make, error, message):
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok.txt", b"fine")
        make(zf)
    with pytest.raises(error, match=message):
        mio.read(path)
    assert not (tmp_path / "escape.dcm").exists()


def _link_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o120777 << 16
    return info


def test_zip_of_non_images_says_so(tmp_path):
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(UnsupportedFormatError):
        mio.read(tmp_path / "notes.zip")


def test_info_on_a_zip_names_members_and_what_was_skipped(tmp_path):
    from medsight.io.info import describe

    paths = write_series(tmp_path / "s", ramp_volume(3))
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for p in paths:
            zf.write(p, f"series/{p.name}")
        zf.writestr("series/readme.txt", "not an image")
    d = describe(tmp_path / "study.zip")
    (image,) = d["images"]
    assert image["shape"] == [3, 6, 5]
    assert image["source"] == f"{tmp_path / 'study.zip'}::series"
    (skipped,) = d["skipped"]
    assert skipped["file"] == f"{tmp_path / 'study.zip'}::series/readme.txt"
    assert "medsight-zip-" not in str(d)  # no temporary paths leak out
