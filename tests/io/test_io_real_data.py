"""The real data in ../shared/data reads as its headers and provenance say."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from io_factory import pgbm_series, series_dir

import medsight.io as mio

pytestmark = pytest.mark.realdata


def test_lidc_0001_is_a_hu_volume_in_true_z_order_with_header_spacing(shared_data):
    folder = series_dir(shared_data, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    image = mio.read(folder)
    files = sorted(folder.glob("*.dcm"))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    zs = sorted(float(h.ImagePositionPatient[2]) for h in headers)
    assert image.shape == (len(files), 512, 512) and image.modality == "CT"
    assert image.meta["units"] == "HU" and image.array.dtype == np.float32
    # spacing: slice step from ImagePositionPatient, in-plane from PixelSpacing
    assert image.spacing[0] == pytest.approx(np.diff(zs).mean()) == pytest.approx(2.5)
    assert image.spacing[1:] == pytest.approx([float(v) for v in headers[0].PixelSpacing])
    # true z order: slice k sits at the k-th smallest z (file names start with '-', so name order differs)
    assert image.origin[2] == pytest.approx(zs[0])
    for k in (0, 5, len(zs) - 1):
        ds = pydicom.dcmread(folder / f"{zs[k]:.6f}.dcm")
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(image.array[0, k], hu)
    # the nodule of the provenance notes: solid tissue at row 367, col 316 of the slice at z = -115
    k = zs.index(-115.0)
    assert 40 < image.array[0, k, 362:373, 311:322].mean() < 160


def test_pgbm_series_are_volumes_and_masks_sit_on_t1post_with_documented_volumes(shared_data):
    expected = {"1991-11-19": 8.11, "1992-04-02": 20.92}
    for date, ml in expected.items():
        t1 = mio.read(pgbm_series(shared_data, date, "T1post"))
        mask = mio.read(pgbm_series(shared_data, date, "MaskTumor"))
        for kind in ("T1prereg", "FLAIRreg"):
            other = mio.read(pgbm_series(shared_data, date, kind))
            assert other.n_spatial == 3 and other.same_geometry(t1)
        assert t1.n_spatial == 3 and mask.same_geometry(t1)
        assert t1.meta.get("units") is None  # RescaleType "US" means unspecified, not a unit
        assert mask.spacing == pytest.approx((6.5, 0.6875, 0.6875), abs=1e-5)  # along the oblique normal
        assert set(np.unique(mask.array)) == {0, 1}
        volume_ml = float((mask.array > 0).sum()) * mask.voxel_volume_mm3 / 1000
        assert volume_ml == pytest.approx(ml, rel=0.01)
        # the stack is oblique: the slice axis is not the z axis
        assert abs(t1.direction[2, 0]) < 0.999


def test_hippocampus_spacing_and_orientation_come_from_the_nifti_header(shared_data):
    import nibabel as nib

    folder = shared_data("msd_hippocampus/imagesTr")
    for path in sorted(folder.glob("*.nii.gz"))[:3]:
        image = mio.read(path)
        nimg = nib.load(str(path))
        assert image.shape == tuple(reversed(nimg.shape))
        assert image.spacing == pytest.approx(tuple(reversed(nimg.header.get_zooms())))
        ras_origin = nimg.affine[:3, 3]
        assert image.origin == pytest.approx((-ras_origin[0], -ras_origin[1], ras_origin[2]))
        np.testing.assert_array_equal(image.array[0], np.asanyarray(nimg.dataobj).T)


def test_pydicom_samples_read_with_hu_and_rle_equals_uncompressed(shared_data):
    folder = shared_data("pydicom_testfiles")
    ct = mio.read(folder / "CT_small.dcm")
    raw = pydicom.dcmread(folder / "CT_small.dcm")
    assert ct.meta["units"] == "HU" and ct.shape == (128, 128)
    np.testing.assert_array_equal(ct.array[0], raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept))
    mr = mio.read(folder / "MR_small.dcm")
    rle = mio.read(folder / "MR_small_RLE.dcm")
    assert rle.meta["transfer_syntax"] == pydicom.uid.RLELossless
    np.testing.assert_array_equal(rle.array, mr.array)
    assert rle.spacing == mr.spacing == pytest.approx((0.3125, 0.3125))
