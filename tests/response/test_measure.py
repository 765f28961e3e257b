"""Lesion sizes from masks: diameters known analytically, oblique stacks, components, volumes."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.errors import GeometryError, ShapeError
from medsight.io.image import Image
from medsight.response.measure import in_plane_diameters, measure_mask


def _ellipse(a_mm: float, b_mm: float, degrees: float, spacing=(0.5, 0.5), size_mm=60.0) -> np.ndarray:
    rows, cols = (int(size_mm / s) for s in spacing)
    yy, xx = np.mgrid[:rows, :cols]
    y, x = (yy - rows / 2) * spacing[0], (xx - cols / 2) * spacing[1]
    t = np.deg2rad(degrees)
    u, v = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    return (u / a_mm) ** 2 + (v / b_mm) ** 2 <= 1


@pytest.mark.parametrize("radius_mm, pixel", [(10.0, 0.5), (10.3, 0.5), (7.77, 0.6875), (4.2, 1.0)])
def test_a_disc_measures_its_diameter_within_a_pixel(radius_mm, pixel):
    longest, perpendicular = in_plane_diameters(_ellipse(radius_mm, radius_mm, 0, (pixel, pixel)), (pixel, pixel))
    assert 2 * radius_mm - 1e-9 <= longest <= 2 * radius_mm + pixel + 1e-9
    assert 2 * radius_mm - pixel <= perpendicular <= longest


@pytest.mark.parametrize("degrees", [0, 30, 45, 73, 120])
@pytest.mark.parametrize("spacing", [(0.5, 0.5), (0.5, 0.8)])
def test_an_ellipse_gives_its_axes_as_longest_and_perpendicular_diameters(degrees, spacing):
    longest, perpendicular = in_plane_diameters(_ellipse(20.0, 10.0, degrees, spacing), spacing)
    pixel = max(spacing)
    assert abs(longest - 40.0) <= pixel + 1e-9
    assert abs(perpendicular - 20.0) <= pixel + 1e-9


def test_a_one_pixel_lesion_is_one_pixel_across_and_an_empty_plane_nothing():
    plane = np.zeros((5, 5), bool)
    assert in_plane_diameters(plane, (0.7, 0.7)) == (0.0, 0.0)
    plane[2, 2] = True
    assert in_plane_diameters(plane, (0.7, 0.9)) == (0.9, 0.7)


def test_a_line_one_pixel_wide_is_measured_along_it():
    plane = np.zeros((3, 40), bool)
    plane[1, 5:25] = True  # 20 pixels of 0.5 mm: 10 mm edge to edge, 0.5 mm wide
    assert in_plane_diameters(plane, (0.5, 0.5)) == pytest.approx((10.0, 0.5))


def _volume(mask: np.ndarray, spacing=(5.0, 0.5, 0.5), direction=None) -> Image:
    return Image(array=mask[None].astype(np.uint8), spacing=spacing, direction=direction)


def _rotation(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    row, col = np.array([1.0, 0, 0]), np.array([0, np.cos(t), np.sin(t)])
    return np.column_stack([np.cross(row, col), col, row])


def test_an_oblique_stack_is_measured_in_its_own_slice_plane():
    mask = np.zeros((4, 120, 120), bool)
    mask[1] = mask[2] = _ellipse(20.0, 10.0, 30, size_mm=60.0)
    axial = measure_mask(_volume(mask))
    tilted = measure_mask(_volume(mask, direction=_rotation(23.0)))
    assert abs(tilted.whole.longest_diameter_mm - 40.0) <= 0.5
    assert abs(tilted.whole.perpendicular_diameter_mm - 20.0) <= 0.5
    assert tilted.whole.longest_diameter_mm == axial.whole.longest_diameter_mm
    assert tilted.whole.volume_ml == pytest.approx(axial.whole.volume_ml)
    assert not np.allclose(tilted.whole.centroid_lps, axial.whole.centroid_lps)  # the LPS position does change


def test_volume_is_voxels_times_the_voxel_volume_in_ml():
    mask = np.zeros((5, 20, 20), bool)
    mask[1:4, 5:15, 5:15] = True  # 300 voxels of 6.5 x 0.6875 x 0.6875 mm
    m = measure_mask(_volume(mask, spacing=(6.5, 0.6875, 0.6875)))
    assert m.whole.voxels == 300
    assert m.whole.volume_ml == pytest.approx(300 * 6.5 * 0.6875**2 / 1000)


def test_lesions_are_3d_connected_components_largest_first():
    mask = np.zeros((6, 60, 60), bool)
    mask[1:4][:, _ellipse(8.0, 8.0, 0, size_mm=30.0)] = True  # a big lesion, 16 mm across
    mask[2, 50:54, 50:54] = True  # a small one far away
    mask[4, 55, 5] = mask[5, 56, 6] = True  # two voxels touching by a corner
    m = measure_mask(_volume(mask))
    assert [lesion.voxels for lesion in m.lesions][:2] == [int(mask[1:4].sum()) - 16, 16]
    assert len(m.lesions) == 3 and m.lesions[2].voxels == 2
    assert len(measure_mask(_volume(mask), connectivity=6).lesions) == 4
    assert m.whole.voxels == int(mask.sum())
    assert m.whole.longest_diameter_mm > m.lesions[0].longest_diameter_mm  # the whole spans both lesions


def test_a_lesion_is_measured_on_the_slice_where_it_is_longest():
    mask = np.zeros((5, 80, 80), bool)
    mask[1] = _ellipse(10.0, 10.0, 0, size_mm=40.0)
    mask[2] = _ellipse(15.0, 6.0, 0, size_mm=40.0)
    m = measure_mask(_volume(mask))
    assert m.lesions[0].slice_index == 2
    assert abs(m.lesions[0].longest_diameter_mm - 30.0) <= 0.5
    assert abs(m.lesions[0].perpendicular_diameter_mm - 12.0) <= 0.5


def test_an_empty_mask_has_no_lesion_and_zero_size():
    m = measure_mask(_volume(np.zeros((3, 8, 8), bool)))
    assert m.lesions == () and m.whole.volume_ml == 0.0 and m.whole.longest_diameter_mm == 0.0


def test_a_mask_in_2d_or_without_known_spacing_is_refused():
    with pytest.raises(ShapeError, match="3D channel"):
        measure_mask(Image(array=np.ones((1, 8, 8)), spacing=(1.0, 1.0)))
    blind = Image(array=np.ones((1, 2, 8, 8)), spacing=(1.0, 1.0, 1.0), meta={"spacing_known": False})
    with pytest.raises(GeometryError, match="spacing is unknown"):
        measure_mask(blind)
