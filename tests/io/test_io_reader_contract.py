"""Every registered reader keeps the Image contract (run over the registry)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from io_factory import make_slice, write

import medsight.io as mio


def make(fmt: str, tmp: Path) -> Path:
    """One small file of each registered format."""
    from PIL import Image as PILImage

    arr = (np.arange(6 * 5) % 200).reshape(6, 5).astype(np.uint8)
    if fmt == "dicom":
        return write(make_slice(arr.astype(np.int16)), tmp / "x.dcm")
    if fmt == "nifti":
        import nibabel as nib

        nib.save(nib.Nifti1Image(np.stack([arr] * 3, -1).astype(np.float32), np.eye(4)), str(tmp / "x.nii.gz"))
        return tmp / "x.nii.gz"
    if fmt in ("png", "jpeg", "tiff"):
        p = tmp / f"x.{ {'png': 'png', 'jpeg': 'jpg', 'tiff': 'tif'}[fmt] }"
        PILImage.fromarray(arr).save(p)
        return p
    if fmt == "npy":
        np.save(tmp / "x.npy", arr)
        return tmp / "x.npy"
    if fmt == "npz":
        np.savez(tmp / "x.npz", image=arr)
        return tmp / "x.npz"
    if fmt == "zip":
        inner = write(make_slice(arr.astype(np.int16)), tmp / "in" / "x.dcm")
        with zipfile.ZipFile(tmp / "x.zip", "w") as zf:
            zf.write(inner, "study/x.dcm")
        return tmp / "x.zip"
    if fmt == "metaimage":
        from medsight.io.image import Image
        from medsight.io.metaimage import write_mhd

        return write_mhd(Image(np.stack([arr] * 3)[None], spacing=(2.0, 0.5, 0.5)), tmp / "x.mhd")
    raise AssertionError(f"no sample for registered format {fmt!r}: add one")


@pytest.mark.parametrize("fmt", mio.registered_formats())
def test_reader_keeps_the_image_contract(tmp_path, fmt):
    path = make(fmt, tmp_path)
    assert mio.sniff_format(path) == fmt
    image = mio.read(path)
    n = image.n_spatial
    assert image.array.ndim == n + 1 and n in (2, 3)
    assert len(image.spacing) == n and all(s > 0 for s in image.spacing)
    assert image.direction.shape == (3, n)
    np.testing.assert_allclose(np.linalg.norm(image.direction, axis=0), 1.0, atol=1e-6)
    assert len(image.origin) == 3
    json.dumps(image.meta)  # JSON-compatible
    json.dumps(image.summary())
    assert "Synthetic" not in json.dumps(image.summary()) and "SYN-PAT" not in json.dumps(image.summary())
    assert "SYN-PAT" not in repr(image) + repr(image.patient)
