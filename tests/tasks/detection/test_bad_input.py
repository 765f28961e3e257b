"""Bad input to the CT nodule detector (issue 10's list), all in one ``medsight predict`` call:
a 2D image, a volume without spacing, a non-CT modality, an MR given to the CT model (as DICOM
and as NIfTI, which carries no modality), a series with missing slices, an ``.mhd`` whose
``.raw`` is missing or short. Each gets a one-line error and the good inputs of the same call
still get results; the missing slices become a warning and a result past ``--max-slice-gap``,
and ``--accept-modality`` forces a modality through."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.io import read
from medsight.io.metaimage import write_mhd
from medsight.io.nifti import write_nifti
from support.bad_inputs import write_png
from support.cli import invoke
from support.series_dicom import write_series


@pytest.fixture(scope="module")
def inputs(luna, tmp_path_factory):
    """name → path of each input; ``good`` and ``good_dicom`` are the same synthetic CT."""
    root = tmp_path_factory.mktemp("bad-inputs")
    good = sorted(luna.glob("*.nii.gz"))[0]
    ct = read(good)
    hu = ct.array[0].astype(np.int16)
    out = {"good": good}
    out["good_dicom"] = root / "ct_series"
    write_series(out["good_dicom"], hu + 1024, modality="CT", spacing=ct.spacing, origin=ct.origin,
                 rescale_intercept=-1024.0)
    out["2d"] = write_png(root / "slice.png", np.clip(hu[20] + 1024, 0, 255).astype(np.uint8))
    out["no_spacing"] = root / "volume.npy"
    np.save(out["no_spacing"], hu)
    out["non_ct"] = write_mhd(ct.with_array(ct.array, modality="NM"), root / "nm.mhd")
    mr = np.clip(hu + 1000, 0, 1200).astype(np.int16)  # MR-like: no negative values, no air at -1000
    out["mr_dicom"] = root / "mr_series"
    write_series(out["mr_dicom"], mr, modality="MR", spacing=ct.spacing, origin=ct.origin)
    out["mr_nifti"] = write_nifti(ct.with_array(mr[None]), root / "mr.nii.gz")
    out["gap"] = root / "gap_series"
    files = write_series(out["gap"], hu + 1024, modality="CT", spacing=ct.spacing, origin=ct.origin,
                         rescale_intercept=-1024.0)
    files[17].unlink()  # one slice missing in the middle
    out["no_raw"] = write_mhd(ct, root / "noraw.mhd")
    (root / "noraw.raw").unlink()
    out["short_raw"] = write_mhd(ct, root / "short.mhd")
    raw = root / "short.raw"
    raw.write_bytes(raw.read_bytes()[: raw.stat().st_size // 2])
    return out


#: bad input → words its one-line error must hold
BAD = {
    "2d": ["3D", "2D image"],
    "no_spacing": ["no voxel spacing"],
    "non_ct": ["takes CT", "NM", "--accept-modality NM"],
    "mr_dicom": ["takes CT", "MR"],
    "mr_nifti": ["Hounsfield", "no air", "--accept-modality"],
    "gap": ["missing slice", "max_slice_gap"],
    "no_raw": ["noraw.raw", "missing"],
    "short_raw": ["short.raw", "bytes"],
}


def _predict(model, inputs, names, tmp_path, *options):
    out = tmp_path / "p.json"
    r = invoke("predict", "--model", model, *[inputs[n] for n in names], "--json", out, *options)
    got = json.loads(out.read_text())
    assert [g["input"] for g in got] == [str(inputs[n]) for n in names]
    return r, dict(zip(names, got))


def test_each_bad_input_is_one_clear_error_and_the_good_ones_still_get_results(tiny_model, inputs, tmp_path):
    names = ["good", *BAD, "good_dicom"]
    r, got = _predict(tiny_model, inputs, names, tmp_path)
    assert r.exit_code == 1 and f"{len(BAD)} of {len(names)} input(s) failed" in r.stderr
    for name in ("good", "good_dicom"):
        assert "error" not in got[name] and "findings" in got[name] and got[name]["threshold"] is not None, name
    assert got["good"]["n_candidates"] == got["good_dicom"]["n_candidates"]
    for name, words in BAD.items():
        error = got[name].get("error")
        assert error and "\n" not in error, (name, got[name])
        assert all(w in error for w in words), (name, error)
        assert str(inputs[name]) in error or inputs[name].name in error, (name, error)  # says which input


def test_missing_slices_within_max_slice_gap_are_a_warning_and_a_result(tiny_model, inputs, tmp_path):
    r, got = _predict(tiny_model, inputs, ["gap", "good"], tmp_path, "--max-slice-gap", 2.5)
    assert r.exit_code == 0, r.stderr
    assert "findings" in got["gap"] and any("missing slice" in w for w in got["gap"]["warnings"])
    assert got["good"]["warnings"] == []
    assert "warning" in r.stdout  # the results table says so
    bad = invoke("predict", "--model", tiny_model, inputs["gap"], "--max-slice-gap", 0.5)
    assert bad.exit_code == 2 and "max_slice_gap" in bad.stderr


def test_accept_modality_forces_a_modality_through(tiny_model, inputs, tmp_path):
    r, got = _predict(tiny_model, inputs, ["non_ct", "mr_dicom", "mr_nifti"], tmp_path, "--accept-modality", "NM")
    assert "findings" in got["non_ct"] and "error" in got["mr_dicom"] and "error" in got["mr_nifti"]
    r, got = _predict(tiny_model, inputs, ["non_ct", "mr_dicom", "mr_nifti"], tmp_path, "--accept-modality", "any")
    assert r.exit_code == 0 and all("findings" in g for g in got.values())
    bad = invoke("predict", "--model", tiny_model, inputs["good"], "--accept-modality", "C T")
    assert bad.exit_code == 2 and "--accept-modality takes DICOM modality codes" in bad.stderr
