"""The classical lung mask: synthetic chests built here (a body ellipse, two lung ellipsoids, a
trachea, nodules) and the real LIDC-IDRI slabs in ../shared/data (skipped when absent)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import ndimage

from medsight.errors import InvalidValueError, MedSightError, ShapeError
from medsight.io.image import Image, default_direction
from medsight.transforms.geometry import Grid
from medsight.transforms.lung import LEFT, RIGHT, inside, lung_mask
from support.data import shared

SLABS = "lidc_idri_nodule_slabs"

# -- synthetic chest (LPS mm: +x patient left, +y posterior, +z superior) -------------------------

LUNG_X = 45.0  # lung centres at x = ±45 mm
TRACHEA = (0.0, -25.0)  # (x, y) of the trachea's axis: midline, anterior
JUXTA = (-74.0, 0.0)  # a nodule on the right lung's lateral pleura (lung edge at x = -75)
CENTRAL = (LUNG_X, 10.0)  # a nodule in the middle of the left lung


def chest(shape=(24, 320, 320), spacing=(2.5, 0.6, 0.6), *, flip_x=False, trachea=True, nodules=True,
          dtype=np.int16) -> Image:
    """Soft tissue (40 HU) body ellipse in air, two lungs at −850 HU, a −1000 HU trachea tube, a
    6 mm-radius juxtapleural nodule and a 5 mm one inside the left lung (both 40 HU)."""
    direction = default_direction(3)
    if flip_x:
        direction = direction.copy()
        direction[:, 2] *= -1  # columns run towards the patient's right
    half = (np.asarray(shape) - 1) / 2 * np.asarray(spacing)
    origin = -(direction @ half)  # the volume centred on (0, 0, 0)
    image = Image(array=np.zeros((1, *shape), dtype), spacing=spacing, origin=tuple(origin), direction=direction,
                  modality="CT")
    k, j, i = (np.arange(n, dtype=float) for n in shape)
    world = [origin[a] + direction[a, 0] * spacing[0] * k[:, None, None] + direction[a, 1] * spacing[1]
             * j[None, :, None] + direction[a, 2] * spacing[2] * i[None, None, :] for a in range(3)]
    x, y, z = world
    zext = half[0]
    hu = np.full(shape, -1000, np.int16)
    hu[np.broadcast_to((x / 85) ** 2 + (y / 65) ** 2 <= 1, shape)] = 40
    for cx in (-LUNG_X, LUNG_X):
        hu[((x - cx) / 30) ** 2 + (y / 45) ** 2 + (z / (1.6 * zext)) ** 2 <= 1] = -850
    if trachea:
        hu[np.broadcast_to((x - TRACHEA[0]) ** 2 + (y - TRACHEA[1]) ** 2 <= 8**2, shape)] = -1000
    if nodules:
        for (cx, cy), r in ((JUXTA, 6.0), (CENTRAL, 5.0)):
            hu[(x - cx) ** 2 + (y - cy) ** 2 + z**2 <= r**2] = 40
    image.array[0] = hu
    return image


def point(xy, z=0.0):
    return np.array([xy[0], xy[1], z])


@pytest.fixture(scope="module")
def synthetic():
    image = chest()
    return image, lung_mask(image)


def test_finds_both_lungs_of_a_synthetic_chest_with_plausible_volumes(synthetic):
    image, lungs = synthetic
    assert lungs.found and lungs.separated and lungs.reason is None
    assert lungs.mask.same_geometry(image) and lungs.array.dtype == np.uint8
    assert set(np.unique(lungs.array)) == {0, LEFT, RIGHT}
    # the lung voxels drawn, per side; the mask adds the nodules and a 3 mm margin (about +17 % in-plane)
    true_ml = np.count_nonzero(image.array[0] == -850) * image.voxel_volume_mm3 / 1000 / 2
    for side in ("left", "right"):
        assert 1.0 * true_ml < lungs.volumes_ml[side] < 1.35 * true_ml, (lungs.volumes_ml, true_ml)


def test_left_is_the_patients_left_in_world_coordinates(synthetic):
    _, lungs = synthetic
    assert lungs.inside(point((LUNG_X, -20.0))) and lungs.inside(point((-LUNG_X, -20.0)))
    idx = np.rint(Grid.of(lungs.mask).world_to_index([point((LUNG_X, -20.0)), point((-LUNG_X, -20.0))])).astype(int)
    assert lungs.array[tuple(idx[0])] == LEFT and lungs.array[tuple(idx[1])] == RIGHT


def test_columns_running_to_the_patients_right_keep_left_and_right():
    lungs = lung_mask(chest(flip_x=True))
    idx = np.rint(Grid.of(lungs.mask).world_to_index([point((LUNG_X, -20.0)), point((-LUNG_X, -20.0))])).astype(int)
    assert lungs.array[tuple(idx[0])] == LEFT and lungs.array[tuple(idx[1])] == RIGHT


def test_trachea_is_removed_and_nodules_stay_inside(synthetic):
    _, lungs = synthetic
    z = np.linspace(-25, 25, 11)
    trachea = np.stack([np.full_like(z, TRACHEA[0]), np.full_like(z, TRACHEA[1]), z], axis=1)
    assert not inside(lungs, trachea).any()
    assert lungs.inside(point(CENTRAL)), "a nodule inside the lung is a hole the per-slice filling closes"
    assert lungs.inside(point(JUXTA)), "the closing takes in a nodule on the pleura"
    assert not lungs.inside(point((0.0, 40.0))), "the mediastinum behind the heart is outside"
    assert not lungs.inside(point((-90.0, 0.0))) and not lungs.inside(point((0.0, 0.0, 500.0)))


def test_without_closing_or_margin_a_juxtapleural_nodule_is_outside():
    lungs = lung_mask(chest(), closing_mm=0, margin_mm=0)
    assert lungs.inside(point(CENTRAL))
    assert not lungs.inside(point(JUXTA))


def test_the_mask_stays_inside_the_body(synthetic):
    image, lungs = synthetic
    x = Grid.of(image).index_to_world(np.argwhere(lungs.array > 0)[::50])
    assert ((x[:, 0] / 85) ** 2 + (x[:, 1] / 65) ** 2 < 1).all()


def test_stats_bounding_box_and_crop(synthetic):
    image, lungs = synthetic
    (lo, hi) = lungs.bbox_mm
    assert lo[0] == pytest.approx(-75 - 3, abs=2.5) and hi[0] == pytest.approx(75 + 3, abs=2.5)  # 3 mm margin
    assert lungs.bbox_voxels[0] == (0, image.shape[0] - 1)  # the lungs run through the slab
    crop = lungs.crop(margin_mm=6.0)
    assert crop[0] == slice(0, image.shape[0])
    assert crop[2].start == lungs.bbox_voxels[2][0] - 10 and crop[2].stop == lungs.bbox_voxels[2][1] + 11
    assert lungs.array[crop].sum() == lungs.array.sum()
    s = lungs.summary()
    assert s["found"] and set(s["volumes_ml"]) == {"left", "right"}


def test_isotropic_and_anisotropic_spacings_give_the_same_volumes():
    coarse = lung_mask(chest(shape=(30, 100, 100), spacing=(2.0, 2.0, 2.0)))
    fine = lung_mask(chest(shape=(24, 320, 320), spacing=(2.5, 0.6, 0.6)))
    for side in ("left", "right"):
        assert coarse.volumes_ml[side] == pytest.approx(fine.volumes_ml[side], rel=0.15)


def test_a_thin_slab_through_the_lungs_keeps_them():
    lungs = lung_mask(chest(shape=(5, 320, 320)))  # 10 mm: the top slice cuts through both lungs
    assert lungs.found and set(lungs.volumes_ml) == {"left", "right"}
    assert not lungs.inside(point(TRACHEA))


def test_touching_lungs_are_split_at_the_midline():
    image = chest(trachea=False, nodules=False)
    hu = image.array[0]
    x = Grid.of(image).index_to_world(np.stack(np.meshgrid(0, np.arange(320), np.arange(320), indexing="ij"),
                                                -1).reshape(-1, 3))
    bridge = ((np.abs(x[:, 0]) < 30) & (np.abs(x[:, 1] + 30) < 4)).reshape(320, 320)
    hu[:, bridge] = -850  # an anterior junction joins the lungs in every slice
    assert ndimage.label(hu == -850)[1] == 1, "the two lungs are one component"
    lungs = lung_mask(image)
    assert lungs.found and lungs.separated
    assert lungs.volumes_ml["left"] == pytest.approx(lungs.volumes_ml["right"], rel=0.1)


@pytest.mark.parametrize("fill", [-1000, 0])
def test_a_volume_without_lungs_gives_an_empty_mask_with_the_reason(fill):
    image = Image(array=np.full((1, 8, 64, 64), fill, np.int16), spacing=(2.0, 1.0, 1.0), modality="CT")
    if fill == 0:  # a water cylinder in air
        yy, xx = np.mgrid[:64, :64]
        image.array[0][:, (yy - 32) ** 2 + (xx - 32) ** 2 > 28**2] = -1000
    lungs = lung_mask(image)
    assert not lungs.found and not lungs.separated and lungs.reason
    assert lungs.array.sum() == 0 and lungs.volumes_ml == {} and lungs.bbox_voxels is None
    assert lungs.crop() == (slice(0, 8), slice(0, 64), slice(0, 64))
    assert not lungs.inside([0.0, 0.0, 0.0])


def test_a_small_air_pocket_is_not_a_lung():
    image = Image(array=np.zeros((1, 8, 64, 64), np.int16), spacing=(2.0, 1.0, 1.0), modality="CT")
    image.array[0, 2:5, 40:45, 40:45] = -900  # 0.15 mL of gas, off the midline
    lungs = lung_mask(image)
    assert not lungs.found and "mL" in lungs.reason


def test_nan_voxels_are_a_clear_error():
    image = chest(shape=(4, 64, 64), spacing=(2.5, 3.0, 3.0), dtype=np.float32)
    image.array[0, 1, 10, 10] = np.nan
    with pytest.raises(InvalidValueError, match="NaN"):
        lung_mask(image)
    assert issubclass(InvalidValueError, MedSightError)


def test_a_2d_or_multichannel_image_is_refused():
    with pytest.raises(ShapeError):
        lung_mask(Image(array=np.zeros((1, 32, 32), np.int16), spacing=(1.0, 1.0)))
    with pytest.raises(ShapeError):
        lung_mask(Image(array=np.zeros((2, 4, 32, 32), np.int16), spacing=(1.0, 1.0, 1.0)))


def test_inside_takes_one_point_or_many_and_refuses_other_shapes(synthetic):
    _, lungs = synthetic
    assert inside(lungs.mask, [LUNG_X, -20.0, 0.0]) is True
    out = inside(lungs.mask, [[LUNG_X, -20.0, 0.0], [0.0, 0.0, 0.0], [np.nan, 0.0, 0.0]])
    assert out.tolist() == [True, False, False]
    with pytest.raises(ShapeError):
        inside(lungs.mask, [1.0, 2.0])


# -- real LIDC-IDRI slabs -------------------------------------------------------------------------


def _slab(patient: str) -> Image:
    from medsight.io import read

    root = shared(f"{SLABS}/{patient}")
    series = [p for p in root.glob("*/*") if p.is_dir()]
    assert len(series) == 1, f"expected one series folder under {root}, found {series}"
    return read(series[0])


def _luna16(series_uid: str) -> list[tuple[np.ndarray, float]]:
    path = shared(f"{SLABS}/luna16/annotations.csv")
    with open(path, newline="") as f:
        return [(np.array([float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])]), float(r["diameter_mm"]))
                for r in csv.DictReader(f) if r["seriesuid"] == series_uid]


def _body(hu: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.binary_fill_holes(s > -500) for s in hu])


@pytest.fixture(scope="module")
def lidc1():
    image = _slab("LIDC-IDRI-0001")
    return image, lung_mask(image)


@pytest.fixture(scope="module")
def lidc2():
    image = _slab("LIDC-IDRI-0002")
    return image, lung_mask(image)


@pytest.mark.realdata
def test_lidc_0001_slab_has_both_lungs_inside_the_body(lidc1):
    image, lungs = lidc1
    assert image.shape[0] == 16  # a 40 mm slab through both lungs
    assert lungs.found and lungs.separated
    for side in ("left", "right"):  # ~35 cm² of lung per side and slice at least, over 4 cm
        assert 150 < lungs.volumes_ml[side] < 1500, lungs.volumes_ml
    assert not (lungs.array > 0)[~_body(image.array[0])].any()


@pytest.mark.realdata
def test_lidc_0001_luna16_nodule_is_inside_the_mask(lidc1):
    image, lungs = lidc1
    nodules = _luna16(image.series_uid)
    assert len(nodules) == 1, "LUNA16 lists one nodule for LIDC-IDRI-0001"
    centre, diameter = nodules[0]
    idx = Grid.of(image).world_to_index(centre)
    assert np.all((idx > -0.5) & (idx < np.asarray(image.shape) - 0.5)), "the nodule lies in the slab"
    assert lungs.inside(centre)
    assert lungs.inside(np.asarray([centre])).tolist() == [True]
    assert image.array[0][tuple(np.rint(idx).astype(int))] > -500, "the centre is soft tissue, not air"


@pytest.mark.realdata
def test_lidc_0002_slab_excludes_the_trachea(lidc2):
    image, lungs = lidc2
    assert lungs.found and lungs.separated
    assert set(lungs.volumes_ml) == {"left", "right"}
    assert not (lungs.array > 0)[~_body(image.array[0])].any()
    hu = image.array[0]
    # the trachea of this upper-chest slab: a round lumen of pure air at row 260, column 260 in every slice
    assert (hu[:, 255:266, 255:266] < -900).all()
    assert not lungs.array[:, 255:266, 255:266].any()
    trachea = Grid.of(image).index_to_world([[k, 260, 260] for k in range(image.shape[0])])
    assert not inside(lungs.mask, trachea).any()
