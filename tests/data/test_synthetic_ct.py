"""The synthetic chest-CT generator (medsight.data.synthetic_ct): synthetic volumes throughout,
plus one comparison with a real LIDC slab (skipped when the shared data is absent)."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
from scipy import ndimage

import medsight.io as mio
from medsight.data.synthetic_ct import (
    DISTRACTOR_KINDS,
    SPACING_XY_RANGE_MM,
    SPACING_Z_RANGE_MM,
    make_chest_ct,
    render,
    sample_scene,
    write_dataset,
)
from medsight.errors import InvalidValueError
from support.data import shared

SHAPE = (90, 224, 224)
SPACING = (1.0, 0.75, 0.75)


@pytest.fixture(scope="module")
def scene():
    return sample_scene(11, shape_zyx=SHAPE, spacing_zyx=SPACING, n_nodules=6, diameter_range_mm=(6.0, 16.0),
                        p_juxtapleural=0.0, p_vascular=0.0, n_bifurcations=2, n_scars=2, n_granulomas=2,
                        n_micronodules=1, noise_hu=20.0)


@pytest.fixture(scope="module")
def noisy(scene):
    return render(scene)


@pytest.fixture(scope="module")
def clean(scene):
    return render(dataclasses.replace(scene, noise_hu=0.0), dtype="float32")


def _lung_voxels(a: np.ndarray) -> np.ndarray:
    """Air inside the body: dark components not touching the in-plane border, eroded by 2."""
    dark = a < -400
    labels, _ = ndimage.label(dark)
    border = np.unique(np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
                                       labels[:, :, -1].ravel()]))
    inside = dark & ~np.isin(labels, border)
    inside = ndimage.binary_erosion(inside, structure=np.ones((1, 5, 5), bool))
    return a[inside]


def _noise_sigma(a: np.ndarray) -> float:
    """Robust std of the residual after a 5x5 in-plane mean, in soft tissue (-150..150 HU, eroded)."""
    a = a.astype(np.float32)
    soft = ndimage.binary_erosion((a > -150) & (a < 150), structure=np.ones((1, 7, 7), bool))
    r = (a - ndimage.uniform_filter(a, (1, 5, 5)))[soft]
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def test_same_seed_gives_the_same_scan_and_another_seed_another():
    a, na, da = make_chest_ct(5, shape_zyx=(40, 128, 128), n_nodules=2)
    b, nb, db = make_chest_ct(5, shape_zyx=(40, 128, 128), n_nodules=2)
    c, nc, _ = make_chest_ct(6, shape_zyx=(40, 128, 128), n_nodules=2)
    assert np.array_equal(a.array, b.array) and na == nb and da == db
    assert a.spacing == b.spacing and a.origin == b.origin and a.series_uid == b.series_uid
    assert not np.array_equal(a.array, c.array) and na != nc and a.series_uid != c.series_uid


def test_the_image_follows_the_project_convention(noisy):
    image, _, _ = noisy
    assert image.array.shape == (1, *SHAPE) and image.array.dtype == np.int16
    assert image.spacing == SPACING and image.modality == "CT"
    assert np.allclose(image.direction, np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]))
    assert image.meta["synthetic"] is True and image.meta["units"] == "HU"


def test_lungs_body_and_bone_have_plausible_hu(noisy):
    a = noisy[0].array[0]
    assert abs(np.median(_lung_voxels(a)) - (-850)) <= 60
    assert np.median(a[:, :3, :3]) <= -950  # air outside the body
    soft = a[(a > -200) & (a < 200)]
    hist, edges = np.histogram(soft, bins=40, range=(-200, 200))
    assert 0 <= edges[np.argmax(hist)] <= 80  # soft tissue peak near 40 HU
    assert np.count_nonzero((a > -130) & (a < -70)) > 0.01 * a.size  # fat layer
    assert np.percentile(a, 99.9) > 400  # ribs and spine


def test_the_noise_has_the_requested_sd_and_renders_over_the_same_anatomy(noisy, clean):
    diff = noisy[0].array[0].astype(np.float32) - clean[0].array[0]
    assert 18 <= float(np.std(diff)) <= 22
    assert noisy[1] == clean[1] and noisy[2] == clean[2]


def test_world_coordinates_of_the_truth_map_to_the_nodule_voxel(clean):
    image, nodules, _ = clean
    assert len(nodules) == 6
    inv = np.linalg.inv(image.affine)
    for n in nodules:
        v = (inv @ np.array([*n.centre_lps, 1.0]))[:3]
        assert np.allclose(v, n.centre_voxel, atol=1e-6)
        value = image.array[(0, *np.round(v).astype(int))]
        assert value > (-300 if n.type != "ground-glass" else -760)


def test_nodule_centres_are_brighter_than_the_lung_around_them(clean):
    image, nodules, _ = clean
    a = image.array[0]
    lung = np.median(_lung_voxels(a))
    for n in nodules:
        centre = a[tuple(np.round(n.centre_voxel).astype(int))]
        if n.type == "ground-glass":
            assert lung + 100 < centre < -400
        else:
            assert centre > lung + 700


def test_diameters_from_a_threshold_match_the_truth(clean):
    image, nodules, _ = clean
    a = image.array[0]
    lung = float(np.median(_lung_voxels(a)))
    for n in nodules:
        level = (lung + n.hu) / 2 if n.type != "part-solid" else (lung - 600) / 2
        c = np.round(n.centre_voxel).astype(int)
        r = int(np.ceil(n.diameter_mm / min(image.spacing))) + 2
        box = tuple(slice(max(0, ci - r), ci + r + 1) for ci in c)
        grid = np.meshgrid(*[(np.arange(b.start, b.stop) - cv) * sp for b, cv, sp in
                             zip(box, n.centre_voxel, image.spacing)], indexing="ij")
        near = np.sqrt(sum(g**2 for g in grid)) <= 0.7 * n.diameter_mm  # lobules, not vessels passing by
        labels, _ = ndimage.label((a[box] > level) & near)
        comp = labels == labels[tuple(ci - b.start for ci, b in zip(c, box))]
        measured = 2 * (3 * comp.sum() * image.voxel_volume_mm3 / (4 * np.pi)) ** (1 / 3)
        assert abs(measured - n.diameter_mm) <= 0.2 * n.diameter_mm, (n, measured)
        assert n.volume_ml == pytest.approx(np.pi * n.diameter_mm**3 / 6000, rel=1e-3)


def test_a_scan_can_have_no_nodule():
    _, nodules, _ = make_chest_ct(2, shape_zyx=(32, 128, 128), n_nodules=0)
    assert nodules == []


def test_distractors_are_present_when_asked_and_absent_otherwise(clean):
    image, nodules, distractors = clean
    kinds = {d.kind for d in distractors}
    assert kinds <= set(DISTRACTOR_KINDS) and {"scar", "calcified_granuloma", "micronodule"} <= kinds
    for d in distractors:
        if d.kind == "calcified_granuloma":
            assert image.array[(0, *np.round(d.centre_voxel).astype(int))] > 200
        if d.kind == "micronodule":
            assert d.size_mm < 3
    _, _, none = make_chest_ct(2, shape_zyx=(32, 128, 128), n_bifurcations=0, n_scars=0, n_granulomas=0,
                               n_micronodules=0)
    assert none == []


def test_juxtapleural_and_vascular_nodules_are_placed_and_flagged():
    _, jp, _ = make_chest_ct(4, shape_zyx=(60, 192, 192), n_nodules=3, p_juxtapleural=1.0,
                             diameter_range_mm=(5, 10))
    _, vs, _ = make_chest_ct(4, shape_zyx=(60, 192, 192), n_nodules=3, p_juxtapleural=0.0, p_vascular=1.0,
                             diameter_range_mm=(5, 10))
    assert jp and all(n.juxtapleural and not n.vascular for n in jp)
    assert vs and all(n.vascular and not n.juxtapleural for n in vs)


def test_spacing_varies_across_seeds_within_the_documented_ranges():
    spacings = {sample_scene(s, n_nodules=0).spacing for s in range(8)}
    assert len(spacings) == 8
    for sz, sy, sx in spacings:
        assert SPACING_Z_RANGE_MM[0] <= sz <= SPACING_Z_RANGE_MM[1]
        assert SPACING_XY_RANGE_MM[0] <= sy == sx <= SPACING_XY_RANGE_MM[1]


def test_rendering_in_slabs_gives_the_same_volume(scene):
    small = dataclasses.replace(scene, shape=(40, 96, 96))
    whole, _, _ = render(small, dtype="float32")
    slabs, _, _ = render(small, dtype="float32", slab_voxels=8 * 96 * 96)
    assert np.allclose(whole.array, slabs.array, atol=1e-3)


def test_flipped_slices_keep_the_truth_in_world_coordinates():
    up, n_up, _ = make_chest_ct(7, shape_zyx=(40, 128, 128), n_nodules=2)
    down, n_down, _ = make_chest_ct(7, shape_zyx=(40, 128, 128), n_nodules=2, flip_z=True)
    assert down.direction[2, 0] == -1.0
    assert np.array_equal(up.array[:, ::-1], down.array)
    for a, b in zip(n_up, n_down):
        assert a.centre_lps == b.centre_lps
        assert np.allclose((down.affine @ np.array([*b.centre_voxel, 1.0]))[:3], b.centre_lps)


def test_bad_parameters_are_refused_with_the_expected_range():
    with pytest.raises(InvalidValueError, match="n_nodules"):
        sample_scene(0, n_nodules=-1)
    with pytest.raises(InvalidValueError, match="nodule_types"):
        sample_scene(0, nodule_types=("calcified",))


def test_the_dataset_writer_writes_nifti_and_luna16_tables(tmp_path):
    write_dataset(tmp_path, 2, seed=20, shape_zyx=(32, 128, 128), n_nodules=2, n_scars=1)
    with (tmp_path / "annotations.csv").open() as f:
        ann = list(csv.DictReader(f))
    with (tmp_path / "annotations_excluded.csv").open() as f:
        excl = list(csv.DictReader(f))
    with (tmp_path / "nodules.csv").open() as f:
        full = list(csv.DictReader(f))
    assert list(ann[0]) == ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]
    assert len(full) == 4 and len(ann) == sum(float(r["diameter_mm"]) >= 3 for r in full)
    assert {r["type"] for r in full} <= {"solid", "part-solid", "ground-glass"}
    with (tmp_path / "distractors.csv").open() as f:
        dist = list(csv.DictReader(f))
    assert excl and all(float(r["diameter_mm"]) == -1 for r in excl)
    lesions = [r for r in dist if r["kind"] not in ("vessel_bifurcation", "scar")]  # no lesion: not excluded
    assert len(excl) == len(lesions) + sum(float(r["diameter_mm"]) < 3 for r in full)
    assert {r["kind"] for r in dist} <= set(DISTRACTOR_KINDS)
    with (tmp_path / "candidates.csv").open() as f:
        cand = list(csv.DictReader(f))
    # LUNA16's candidates columns: the nodules of 3 mm and more as class 1, bifurcations and scars as 0
    assert [r["coordX"] for r in cand if r["class"] == "1"] == [r["coordX"] for r in ann]
    assert sorted(r["coordX"] for r in cand if r["class"] == "0") == sorted(
        r["coordX"] for r in dist if r["kind"] in ("vessel_bifurcation", "scar"))
    assert any(r["kind"] == "scar" for r in dist)
    with (tmp_path / "seriesuids.csv").open() as f:
        series = list(csv.DictReader(f))
    assert sorted(int(r["seed"]) for r in series) == [20, 21]
    for entry in series:
        uid = entry["seriesuid"]
        image = mio.read(tmp_path / f"{uid}.nii.gz")
        expected, nodules, _ = make_chest_ct(int(entry["seed"]), shape_zyx=(32, 128, 128), n_nodules=2, n_scars=1)
        assert image.same_geometry(expected) and np.array_equal(image.array, expected.array)
        inv = np.linalg.inv(image.affine)
        rows = [r for r in ann if r["seriesuid"] == uid]
        assert len(rows) == len(nodules)
        for row, n in zip(rows, nodules):
            v = (inv @ np.array([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]), 1.0]))[:3]
            assert np.allclose(v, n.centre_voxel, atol=1e-3)
            assert float(row["diameter_mm"]) == pytest.approx(n.diameter_mm, abs=1e-3)


def test_real_lidc_slab_and_synthetic_scan_have_similar_lung_hu_and_noise(noisy):
    """Real data: LIDC-IDRI-0001's slab read with medsight.io.read (docs/detection.md has the numbers)."""
    real = mio.read(shared("lidc_idri_nodule_slabs/LIDC-IDRI-0001")).array[0]
    synth = noisy[0].array[0]
    real_lung, synth_lung = float(np.median(_lung_voxels(real))), float(np.median(_lung_voxels(synth)))
    real_sigma, synth_sigma = _noise_sigma(real), _noise_sigma(synth)
    assert -950 <= real_lung <= -800 and abs(real_lung - synth_lung) <= 100
    assert 0.4 <= synth_sigma / real_sigma <= 2.5


def test_the_dataset_writer_writes_metaimage_when_io_has_a_writer_and_says_so_otherwise(tmp_path):
    import importlib.util

    if importlib.util.find_spec("medsight.io.metaimage") is None:
        with pytest.raises(InvalidValueError, match="metaimage"):
            write_dataset(tmp_path, 1, seed=30, fmt="mhd", shape_zyx=(24, 96, 96), n_nodules=1)
        return
    write_dataset(tmp_path, 1, seed=30, fmt="mhd", shape_zyx=(24, 96, 96), n_nodules=1)
    expected, _, _ = make_chest_ct(30, shape_zyx=(24, 96, 96), n_nodules=1)
    image = mio.read(tmp_path / f"{expected.series_uid}.mhd")
    assert image.same_geometry(expected) and np.array_equal(image.array, expected.array)


def test_the_number_of_nodules_leaves_the_anatomy_and_distractors_alone():
    a = sample_scene(9, shape_zyx=(40, 128, 128), n_nodules=0)
    b = sample_scene(9, shape_zyx=(40, 128, 128), n_nodules=3)
    assert np.array_equal(a.vessels, b.vessels) and a.lungs[0]["a"] == b.lungs[0]["a"]
    assert len(a.distractors) == len(b.distractors) and not a.nodules and len(b.nodules) == 3
