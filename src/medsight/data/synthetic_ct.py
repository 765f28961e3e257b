"""Seeded synthetic chest CT with lung-nodule ground truth (for training and benchmarking on a CPU).

The real LIDC slabs in the shared data are checks only; a detector is trained and benchmarked on
volumes made here. What is modelled (docs/detection.md, "Synthetic chest CT", says more):

* a body (soft tissue ~40 HU inside a subcutaneous fat layer ~-100 HU) in air (-1000 HU),
  mediastinal fat, a heart, a spine (vertebral bodies, discs, canal), a sternum and ribs
  (cortex ~700 HU around marrow ~250 HU) that run around the chest wall and descend anteriorly;
* two lungs (~-850 HU, a little denser posteriorly) with a diaphragm dome and a cardiac notch;
* tapering vessel trees (~40 HU) grown from each hilum by a seeded random walk that branches,
  and a trachea with its main and lobar bronchi (air lumens with a soft-tissue wall);
* nodules of 3-30 mm: solid (~30 HU), part-solid (a solid core in a ground-glass halo) and
  ground-glass (~-600 HU), lobulated spheres, some touching the pleura (juxtapleural) and some
  attached to a vessel (vascular);
* distractors that are not nodules: vessel bifurcations running along z (seen end-on),
  elongated scars (linear densities), calcified granulomas and micronodules below 3 mm;
* partial volume (each boundary is a linear ramp one voxel wide along its normal), a Gaussian
  point-spread function and Gaussian noise correlated by it, slice spacing 0.7-2.5 mm and
  in-plane spacing 0.5-0.9 mm.

The random parameters of a scan are drawn once into a scene (:func:`sample_scene`); rendering
(:func:`render`) is deterministic and works in slabs of slices, so a 512x512x300 volume is built
in bounded memory and comes out the same whatever the slab size. The noise of slice ``k`` comes
from its own seeded stream, so ``noise_hu=0`` renders the same anatomy without noise.

Example:
    >>> image, nodules, distractors = make_chest_ct(0, shape_zyx=(40, 96, 96), n_nodules=2)
    >>> image.array.shape, image.modality, len(nodules)
    ((1, 40, 96, 96), 'CT', 2)
"""

from __future__ import annotations

import csv
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medsight.errors import InvalidValueError
from medsight.io.image import Image

__all__ = [
    "Distractor",
    "Nodule",
    "Scene",
    "make_chest_ct",
    "render",
    "sample_scene",
    "series_uid",
    "write_dataset",
    "NODULE_TYPES",
    "DISTRACTOR_KINDS",
]

log = logging.getLogger(__name__)

NODULE_TYPES = ("solid", "part-solid", "ground-glass")
DISTRACTOR_KINDS = ("vessel_bifurcation", "scar", "calcified_granuloma", "micronodule")
#: Distractors no reader would mark as a lesion: class 0 in ``candidates.csv`` and a false positive
#: when found (the granulomas and micronodules are lesions that count neither way, in
#: ``annotations_excluded.csv`` as LUNA16's excluded list has such lesions).
NOT_LESIONS = ("vessel_bifurcation", "scar")

AIR_HU, FAT_HU, SOFT_HU, LUNG_HU, BLOOD_HU = -1000.0, -100.0, 40.0, -850.0, 40.0
CORTEX_HU, MARROW_HU, AIRWAY_WALL_HU = 700.0, 250.0, 20.0
SPACING_Z_RANGE_MM = (0.7, 2.5)
SPACING_XY_RANGE_MM = (0.5, 0.9)
DIAMETER_RANGE_MM = (3.0, 30.0)
NOISE_RANGE_HU = (10.0, 30.0)
_UID_NAMESPACE = uuid.UUID("6c0d1e2a-4f1b-5a3e-9f43-6d6564736967")


@dataclass(frozen=True)
class Nodule:
    """Ground truth of one nodule.

    Attributes:
        centre_lps: centre in patient LPS mm (x, y, z), as LUNA16's coordX, coordY, coordZ.
        centre_voxel: centre as fractional array indices (z, y, x) of the returned image.
        diameter_mm: equivalent-sphere diameter of the whole nodule (halo included), mm.
        volume_ml: volume of the whole nodule, mL.
        type: "solid", "part-solid" or "ground-glass".
        juxtapleural: the nodule touches the pleura (chest wall, mediastinum or diaphragm).
        vascular: the nodule is attached to a vessel.
        solid_diameter_mm: equivalent diameter of the solid part (the whole for solid, 0 for GGO).
        hu: attenuation of the nodule (of its solid part for part-solid), HU.
    """

    centre_lps: tuple[float, float, float]
    centre_voxel: tuple[float, float, float]
    diameter_mm: float
    volume_ml: float
    type: str
    juxtapleural: bool
    vascular: bool
    solid_diameter_mm: float
    hu: float


@dataclass(frozen=True)
class Distractor:
    """Something nodule-like that is not a nodule (a detector should not report it).

    Attributes:
        kind: one of :data:`DISTRACTOR_KINDS`.
        centre_lps: centre in patient LPS mm (x, y, z).
        centre_voxel: centre as fractional array indices (z, y, x).
        size_mm: diameter (length for a scar), mm.
        hu: attenuation, HU.
    """

    kind: str
    centre_lps: tuple[float, float, float]
    centre_voxel: tuple[float, float, float]
    size_mm: float
    hu: float


@dataclass
class _Blob:
    """A lobulated sphere painted so that it only raises the attenuation (grid mm, z y x)."""

    centre: np.ndarray
    radius: float  # scale of the surface function; the surface is radius * shape(u)
    hu: float
    lobes: np.ndarray  # (n, 3) unit directions
    lobe_amp: np.ndarray  # (n,)
    lobe_kappa: np.ndarray  # (n,)
    core_fraction: float = 0.0  # part-solid: the core is the same shape scaled by this
    core_hu: float = 0.0

    def surface(self, u: np.ndarray) -> np.ndarray:
        """Radius of the surface along unit directions ``u`` (..., 3), mm."""
        r = np.ones(u.shape[:-1], np.float32)
        for d, a, k in zip(self.lobes, self.lobe_amp, self.lobe_kappa):
            r += a * np.exp(k * ((u @ d.astype(np.float32)) - 1.0))
        return self.radius * r

    def volume_mm3(self, scale: float = 1.0) -> float:
        u = _fibonacci_sphere(4000)
        return float(4.0 * np.pi * np.mean((scale * self.surface(u)) ** 3) / 3.0)


@dataclass
class Scene:
    """The random parameters of one synthetic scan (grid mm, axes z y x, canonical orientation:
    slice index up = superior, row up = posterior, column up = patient left)."""

    seed: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin_lps: tuple[float, float, float]  # LPS of voxel (0, 0, 0) in canonical orientation
    flip_z: bool
    noise_hu: float
    psf_fwhm_mm: float
    body: dict
    lungs: list[dict]
    heart: dict
    spine: dict
    ribs: list[np.ndarray] = field(default_factory=list)  # segment arrays (n, 8): p0, p1, r0, r1
    vessels: np.ndarray = field(default_factory=lambda: np.zeros((0, 8)))
    airways: np.ndarray = field(default_factory=lambda: np.zeros((0, 9)))  # + wall thickness
    scars: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (segment (8,), hu)
    junctions: list[tuple[np.ndarray, float]] = field(default_factory=list)  # vessel-layer balls
    blobs: list[_Blob] = field(default_factory=list)
    nodules: list[dict] = field(default_factory=list)
    distractors: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# the public API


def make_chest_ct(
    seed: int,
    *,
    shape_zyx: tuple[int, int, int] | None = None,
    spacing_zyx: tuple[float, float, float] | None = None,
    n_nodules: int | None = None,
    diameter_range_mm: tuple[float, float] = DIAMETER_RANGE_MM,
    nodule_types: tuple[str, ...] = NODULE_TYPES,
    p_juxtapleural: float = 0.25,
    p_vascular: float = 0.2,
    n_bifurcations: int | None = None,
    n_scars: int | None = None,
    n_granulomas: int | None = None,
    n_micronodules: int | None = None,
    noise_hu: float | None = None,
    psf_fwhm_mm: float | None = None,
    flip_z: bool = False,
    dtype: str = "int16",
    slab_voxels: int = 8_000_000,
) -> tuple[Image, list[Nodule], list[Distractor]]:
    """A synthetic chest CT and its ground truth, the same for the same arguments.

    Args:
        seed: the seed; every random choice follows from it.
        shape_zyx: (slices, rows, cols); None draws (100-200, 256, 256). The anatomy is scaled
            to the field of view (an adult chest of ~330 mm width at 512 x 0.7 mm).
        spacing_zyx: mm; None draws slices 0.7-2.5 mm apart and 0.5-0.9 mm pixels.
        n_nodules: nodules to place (0 for a scan without any); None draws 0-4.
        diameter_range_mm: nodule diameters are drawn log-uniformly in this range, mm.
        nodule_types: the types to draw from (solid 60 %, ground-glass 25 %, part-solid 15 %).
        p_juxtapleural: chance that a nodule touches the pleura.
        p_vascular: chance that a nodule that is not juxtapleural is attached to a vessel. A
            nodule whose flagged placement fails at every size is placed free (flags off).
        n_bifurcations, n_scars, n_granulomas, n_micronodules: distractors of each kind;
            None draws a few of each (0-3).
        noise_hu: standard deviation of the noise in flat regions, HU; None draws 10-30.
        psf_fwhm_mm: in-plane full width at half maximum of the point-spread function, mm;
            None draws 0.7-1.2.
        flip_z: store slices from superior to inferior (direction (0, 0, -1) along axis 0),
            to exercise geometry handling; the truth's world coordinates are unchanged.
        dtype: "int16" (HU, rounded and clipped to [-1024, 3071]) or "float32".
        slab_voxels: voxels rendered at a time; bounds the memory (about 5 float32 copies).

    Returns:
        (image, nodules, distractors): ``image.array`` is ``(1, z, y, x)`` HU with spacing
        (z, y, x) mm, LPS origin and direction, modality "CT"; the truth is in LPS mm and in
        array indices of that image.

    Raises:
        InvalidValueError: a parameter is out of its range.
    """
    scene = sample_scene(
        seed, shape_zyx=shape_zyx, spacing_zyx=spacing_zyx, n_nodules=n_nodules,
        diameter_range_mm=diameter_range_mm, nodule_types=nodule_types, p_juxtapleural=p_juxtapleural,
        p_vascular=p_vascular, n_bifurcations=n_bifurcations, n_scars=n_scars, n_granulomas=n_granulomas,
        n_micronodules=n_micronodules, noise_hu=noise_hu, psf_fwhm_mm=psf_fwhm_mm, flip_z=flip_z,
    )
    return render(scene, dtype=dtype, slab_voxels=slab_voxels)


def sample_scene(
    seed: int,
    *,
    shape_zyx: tuple[int, int, int] | None = None,
    spacing_zyx: tuple[float, float, float] | None = None,
    n_nodules: int | None = None,
    diameter_range_mm: tuple[float, float] = DIAMETER_RANGE_MM,
    nodule_types: tuple[str, ...] = NODULE_TYPES,
    p_juxtapleural: float = 0.25,
    p_vascular: float = 0.2,
    n_bifurcations: int | None = None,
    n_scars: int | None = None,
    n_granulomas: int | None = None,
    n_micronodules: int | None = None,
    noise_hu: float | None = None,
    psf_fwhm_mm: float | None = None,
    flip_z: bool = False,
) -> Scene:
    """Draw every random parameter of a scan (see :func:`make_chest_ct` for the arguments)."""
    _check_args(shape_zyx, spacing_zyx, n_nodules, diameter_range_mm, nodule_types, p_juxtapleural, p_vascular)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5C7]))
    # the scan-level values are drawn whether or not an argument overrides them, and nodules come
    # last, so that (for a given shape and spacing) the noise and nodule count leave the anatomy alone
    drawn_nz = int(rng.integers(100, 201))
    drawn_sp = (float(rng.uniform(*SPACING_Z_RANGE_MM)), float(rng.uniform(*SPACING_XY_RANGE_MM)))
    drawn_counts = rng.integers(0, 5), rng.integers(0, 4, size=4)
    drawn_noise, drawn_psf = float(rng.uniform(*NOISE_RANGE_HU)), float(rng.uniform(0.7, 1.2))
    shape = tuple(int(s) for s in shape_zyx) if shape_zyx is not None else (drawn_nz, 256, 256)
    spacing = tuple(float(s) for s in spacing_zyx) if spacing_zyx is not None else (
        drawn_sp[0], drawn_sp[1], drawn_sp[1])
    n_nod = int(drawn_counts[0]) if n_nodules is None else int(n_nodules)
    counts = [int(c) if g is None else int(g) for c, g in zip(
        drawn_counts[1], (n_bifurcations, n_scars, n_granulomas, n_micronodules))]
    extent = np.asarray(shape, float) * np.asarray(spacing)
    centre_world = np.array([rng.uniform(-10, 10), rng.uniform(-30, 10), rng.uniform(-250, 0)])  # x y z
    origin = centre_world - (np.asarray(shape[::-1], float) - 1) / 2 * np.asarray(spacing[::-1])
    scene = Scene(
        seed=int(seed), shape=shape, spacing=spacing, origin_lps=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        flip_z=bool(flip_z), noise_hu=drawn_noise if noise_hu is None else float(noise_hu),
        psf_fwhm_mm=drawn_psf if psf_fwhm_mm is None else float(psf_fwhm_mm),
        body={}, lungs=[], heart={}, spine={},
    )
    _sample_anatomy(scene, rng, extent)
    _grow_vessels(scene, rng)
    _sample_airways(scene, rng)
    _sample_distractors(scene, rng, counts)
    _sample_nodules(scene, rng, n_nod, diameter_range_mm, nodule_types, p_juxtapleural, p_vascular)
    return scene


def render(scene: Scene, *, dtype: str = "int16",
           slab_voxels: int = 8_000_000) -> tuple[Image, list[Nodule], list[Distractor]]:
    """Render a scene into an :class:`~medsight.io.image.Image` and its ground truth.

    Slabs of slices are rendered with a margin for the blur, so the result does not depend on
    ``slab_voxels``.
    """
    if dtype not in ("int16", "float32"):
        raise InvalidValueError(f"The 'dtype' parameter of render must be 'int16' or 'float32'. Got {dtype!r} instead.")
    nz, ny, nx = scene.shape
    out = np.empty((1, nz, ny, nx), dtype=np.int16 if dtype == "int16" else np.float32)
    sigma = _psf_sigma_vox(scene)
    halo = int(3.0 * sigma[0] + 0.5) + 1
    step = max(1, int(slab_voxels) // (ny * nx) - 2 * halo)
    maps = _in_plane_maps(scene)
    white = scene.noise_hu / _noise_gain(sigma) if scene.noise_hu > 0 else 0.0
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        a, b = max(0, z0 - halo), min(nz, z1 + halo)
        slab = _render_slab(scene, maps, a, b)
        if white:
            for k in range(a, b):
                g = np.random.default_rng(np.random.SeedSequence([scene.seed, 0x401CE, k]))
                slab[k - a] += g.standard_normal((ny, nx), dtype=np.float32) * np.float32(white)
        if any(s > 0 for s in sigma):
            slab = ndimage.gaussian_filter(slab, sigma=sigma, mode="nearest", truncate=3.0)
        part = slab[z0 - a: z0 - a + (z1 - z0)]
        if dtype == "int16":
            np.clip(np.rint(part), -1024, 3071, out=part)
        out[0, z0:z1] = part
    if scene.flip_z:
        out = np.ascontiguousarray(out[:, ::-1])
    image = Image(
        array=out, spacing=scene.spacing, origin=_image_origin(scene), direction=_direction(scene),
        modality="CT", series_uid=series_uid(scene.seed), source=f"synthetic chest CT (seed {scene.seed})",
        meta={"synthetic": True, "generator": __name__, "seed": scene.seed, "units": "HU",
              "noise_hu": round(scene.noise_hu, 3), "psf_fwhm_mm": round(scene.psf_fwhm_mm, 3),
              "series_description": "synthetic chest CT"},
    )
    nodules = [Nodule(centre_lps=_lps(scene, n["centre"]), centre_voxel=_voxel(scene, n["centre"]),
                      **{k: v for k, v in n.items() if k != "centre"}) for n in scene.nodules]
    distractors = [Distractor(centre_lps=_lps(scene, d["centre"]), centre_voxel=_voxel(scene, d["centre"]),
                              **{k: v for k, v in d.items() if k != "centre"}) for d in scene.distractors]
    return image, nodules, distractors


def series_uid(seed: int) -> str:
    """The SeriesInstanceUID of the synthetic scan of ``seed`` (a 2.25 UUID-derived UID)."""
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, f'synthetic-chest-ct-{int(seed)}').int}"


# ---------------------------------------------------------------------------------------------
# dataset writer


def write_dataset(folder: str | Path, n: int, seed: int, *, fmt: str = "nifti",
                  **options) -> Path:
    """Write ``n`` synthetic scans with LUNA16-style truth tables into ``folder``.

    Files: ``<seriesuid>.nii.gz`` (or ``.mhd`` when ``fmt="mhd"`` and ``medsight.io.metaimage``
    has its writer, ``write_mhd``), ``annotations.csv`` (seriesuid, coordX, coordY, coordZ, diameter_mm: world
    LPS mm of nodules of 3 mm and more), ``annotations_excluded.csv`` (the lesions that count
    neither way, as in LUNA16: nodules below 3 mm, micronodules and calcified granulomas, diameter
    -1), ``nodules.csv`` (the full truth: type, volume, flags,
    voxel centre), ``distractors.csv`` (kind, size, HU, voxel centre), ``candidates.csv``
    (LUNA16's candidates columns ``seriesuid,coordX,coordY,coordZ,class``: the nodules of 3 mm
    and more as class 1, the distractors that are no lesion at all, vessel bifurcations and
    scars, as class 0: a finding there is a false positive, and a detector is trained to call
    them background, ``data.negatives``) and
    ``seriesuids.csv`` (seed, shape, spacing). Scan ``i`` is ``make_chest_ct(seed + i, **options)``.

    Returns:
        the folder.
    """
    from medsight.io.nifti import write_nifti

    if int(n) < 0:
        raise InvalidValueError(f"The 'n' parameter of write_dataset must be >= 0. Got {n!r} instead.")
    if fmt not in ("nifti", "mhd"):
        raise InvalidValueError(f"The 'fmt' parameter of write_dataset must be 'nifti' or 'mhd'. Got {fmt!r} instead.")
    writer = write_nifti
    suffix = ".nii.gz"
    if fmt == "mhd":
        import importlib

        try:  # the MetaImage writer lives in io once it has one; this module does not depend on it
            module = importlib.import_module("medsight.io.metaimage")
        except ImportError as exc:
            raise InvalidValueError("fmt='mhd' needs medsight.io.metaimage, which is absent") from exc
        writer = getattr(module, "write_mhd", None) or getattr(module, "write_metaimage", None)
        if writer is None:
            raise InvalidValueError("fmt='mhd' needs a writer in medsight.io.metaimage (write_mhd); there is none")
        suffix = ".mhd"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ann, excl, full, dist, uids, cand = [], [], [], [], [], []
    for i in range(int(n)):
        image, nodules, distractors = make_chest_ct(int(seed) + i, **options)
        uid = image.series_uid
        writer(image, folder / f"{uid}{suffix}")
        uids.append([uid, int(seed) + i] + list(image.shape) + [round(s, 6) for s in image.spacing])
        for nd in nodules:
            row = [uid, *(_r(c) for c in nd.centre_lps)]
            (ann if nd.diameter_mm >= 3.0 else excl).append(row + [_r(nd.diameter_mm) if nd.diameter_mm >= 3.0 else -1])
            if nd.diameter_mm >= 3.0:
                cand.append(row + [1])
            full.append([uid, *(_r(c) for c in nd.centre_lps), *(_r(c) for c in nd.centre_voxel), _r(nd.diameter_mm),
                         round(nd.volume_ml, 6), nd.type, int(nd.juxtapleural), int(nd.vascular),
                         _r(nd.solid_diameter_mm), _r(nd.hu)])
        for d in distractors:
            if d.kind in NOT_LESIONS:
                cand.append([uid, *(_r(c) for c in d.centre_lps), 0])
            else:
                excl.append([uid, *(_r(c) for c in d.centre_lps), -1])
            dist.append([uid, *(_r(c) for c in d.centre_lps), *(_r(c) for c in d.centre_voxel), d.kind,
                         _r(d.size_mm), _r(d.hu)])
    _write_csv(folder / "annotations.csv", ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], ann)
    _write_csv(folder / "annotations_excluded.csv", ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], excl)
    _write_csv(folder / "nodules.csv", ["seriesuid", "coordX", "coordY", "coordZ", "voxel_z", "voxel_y", "voxel_x",
                                        "diameter_mm", "volume_ml", "type", "juxtapleural", "vascular",
                                        "solid_diameter_mm", "hu"], full)
    _write_csv(folder / "distractors.csv", ["seriesuid", "coordX", "coordY", "coordZ", "voxel_z", "voxel_y",
                                            "voxel_x", "kind", "size_mm", "hu"], dist)
    _write_csv(folder / "candidates.csv", ["seriesuid", "coordX", "coordY", "coordZ", "class"], cand)
    _write_csv(folder / "seriesuids.csv", ["seriesuid", "seed", "slices", "rows", "cols", "spacing_z", "spacing_y",
                                           "spacing_x"], uids)
    return folder


def _r(v: float) -> float:
    return round(float(v), 4)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------------------------------------
# sampling


def _check_args(shape, spacing, n_nodules, diam, types, pj, pv) -> None:
    if shape is not None and (len(shape) != 3 or min(shape) < 16):
        raise InvalidValueError(f"The 'shape_zyx' parameter must be 3 sizes of at least 16. Got {shape!r} instead.")
    if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
        raise InvalidValueError(f"The 'spacing_zyx' parameter must be 3 positive mm. Got {spacing!r} instead.")
    if n_nodules is not None and int(n_nodules) < 0:
        raise InvalidValueError(f"The 'n_nodules' parameter must be >= 0. Got {n_nodules!r} instead.")
    if not (0 < diam[0] <= diam[1]):
        raise InvalidValueError(f"The 'diameter_range_mm' parameter must be 0 < low <= high. Got {diam!r} instead.")
    bad = [t for t in types if t not in NODULE_TYPES]
    if bad or not types:
        raise InvalidValueError(
            f"The 'nodule_types' parameter must name some of {NODULE_TYPES}. Got {types!r} instead.")
    for name, p in (("p_juxtapleural", pj), ("p_vascular", pv)):
        if not 0 <= p <= 1:
            raise InvalidValueError(f"The '{name}' parameter must be in [0, 1]. Got {p!r} instead.")


def _sample_anatomy(scene: Scene, rng: np.random.Generator, extent: np.ndarray) -> None:
    ez, ey, ex = extent
    cz, cy, cx = extent / 2 - np.asarray(scene.spacing) / 2  # grid mm of the volume centre
    ax = min(0.46 * min(ex, ey / 0.72), 170.0) * rng.uniform(0.9, 1.0)
    ay = ax * rng.uniform(0.62, 0.74)
    k = ax / 165.0  # anatomy scale relative to an adult
    fat = max(2.0, rng.uniform(0.04, 0.08) * ax)
    scene.body = {"c": (cy + rng.uniform(-0.03, 0.03) * ay, cx), "a": (ay, ax), "fat": fat, "k": k,
                  "zc": cz, "ext": ez}
    lz = float(np.clip(0.85 * ez, 150.0 * k, 260.0 * k))
    zb = cz - lz / 2 + rng.uniform(-0.05, 0.05) * lz
    wall = fat + 7.0 * k + 4.0 * k + 3.0  # rib path inside the fat, rib radius, gap
    lungs = []
    for side in (-1.0, 1.0):  # patient right (-x), left (+x)
        la = min(0.36 * ax * rng.uniform(0.93, 1.05), ax - wall - 0.5 * ax)
        lcy = cy + 0.05 * ay
        lb = min(0.78 * ay * rng.uniform(0.93, 1.03), ay - wall - 0.05 * ay)
        lungs.append({"c": (lcy, cx + side * 0.5 * ax), "a": (lb, la), "zb": zb, "lz": lz,
                      "dome": rng.uniform(0.15, 0.25) * lz * (1.1 if side < 0 else 1.0), "side": side,
                      "hu": LUNG_HU + rng.uniform(-25, 25), "grad": rng.uniform(10, 35)})
    scene.lungs = lungs
    scene.heart = {"c": (cy - 0.2 * ay, cx + 0.12 * ax, zb + 0.2 * lz),
                   "a": (0.42 * ay, 0.36 * ax, 0.2 * lz) * np.array(rng.uniform(0.9, 1.1, 3))}
    period = 27.0 * k * rng.uniform(0.9, 1.1)
    scene.spine = {"c": (cy + 0.68 * ay, cx), "r": (0.11 * ay * 1.3, 0.11 * ax), "period": period,
                   "phase": rng.uniform(0, period), "disc": 0.2 * period}
    # ribs: polylines around the chest wall, descending anteriorly
    ribs = []
    r_rib = 4.0 * k
    z_apex = zb + lz
    for j in range(14):
        z_post = z_apex - (10 + j * 24) * k + rng.uniform(-2, 2)
        if z_post < -40 * k or z_post > ez + 40 * k:
            continue
        drop = rng.uniform(25, 45) * k
        for side in (-1.0, 1.0):
            phi = np.radians(np.linspace(70, -60, 14))
            ry, rx = ay - fat - 7.0 * k, ax - fat - 7.0 * k
            pts = np.stack([z_post - drop * (70 - np.degrees(phi)) / 130,
                            cy + ry * np.sin(phi), cx + side * rx * np.cos(phi)], axis=1)
            seg = np.concatenate([pts[:-1], pts[1:], np.full((13, 1), r_rib), np.full((13, 1), r_rib)], axis=1)
            ribs.append(seg)
    scene.ribs = ribs


def _lung_sdf_points(scene: Scene, p: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) of points ``p`` (n, 3) to the lungs."""
    p = np.atleast_2d(p)
    z, y, x = p[:, 0], p[:, 1], p[:, 2]
    hc, ha = np.asarray(scene.heart["c"]), np.asarray(scene.heart["a"])
    qh = np.sqrt(((y - hc[0]) / ha[0]) ** 2 + ((x - hc[1]) / ha[1]) ** 2 + ((z - hc[2]) / ha[2]) ** 2)
    heart = (qh - 1) * ha.min()
    best = np.full(len(p), np.inf)
    for lung in scene.lungs:
        q0, g0 = _ellipse_q_g(y - lung["c"][0], x - lung["c"][1], *lung["a"])
        s = _lung_profile(lung, z)
        ell = (q0 - s) / g0
        dome = (lung["zb"] + lung["dome"] * (1 - np.minimum(q0, 1) ** 2)) - z
        best = np.minimum(best, np.maximum.reduce([ell, dome, -heart]))
    return best


def _lung_profile(lung: dict, z) -> np.ndarray:
    t = (np.asarray(z, float) - lung["zb"]) / lung["lz"]
    tc = 0.35
    u = np.clip((t - tc) / (1 - tc), 0, 1.2)
    return np.sqrt(np.clip(1 - u**2, 0, 1)) * (t >= -0.5)


def _ellipse_q_g(dy, dx, a_y, a_x):
    q = np.sqrt((dy / a_y) ** 2 + (dx / a_x) ** 2)
    g = np.sqrt((dy / a_y**2) ** 2 + (dx / a_x**2) ** 2) / np.maximum(q, 1e-6)
    return q, np.maximum(g, 1e-6)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _perp(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    e = rng.normal(size=3)
    return _unit(e - (e @ d) * d)


def _grow_vessels(scene: Scene, rng: np.random.Generator, r_min: float = 0.4, max_segments: int = 2000) -> None:
    segs = []
    k = scene.body["k"]
    for lung in scene.lungs:
        side = lung["side"]
        cy, cx = lung["c"]
        hilum = np.array([lung["zb"] + 0.5 * lung["lz"], cy - 0.05 * lung["a"][0], cx - side * 0.55 * lung["a"][1]])
        lung["hilum"] = hilum
        trunks = [(0.8, 0, 0.4 * side), (-0.8, 0.3, 0.4 * side), (0.0, -0.6, 0.8 * side), (-0.2, 0.7, 0.7 * side),
                  (0.3, 0.1, 0.9 * side)]
        queue = deque((hilum, _unit(np.array(t)), 4.5 * np.sqrt(k) * rng.uniform(0.85, 1.15), 0) for t in trunks)
        n = 0
        while queue and n < max_segments:
            p0, d0, r0, gen = queue.popleft()
            out = hilum if gen == 0 else p0
            length = float(np.clip(r0 * rng.uniform(5, 9), 3.0, 35.0 * k))
            for attempt in range(8):
                d = _unit(d0 + rng.normal(0, 0.25 + 0.1 * attempt, 3) + 0.3 * _unit(p0 - out + 1e-6))
                r1 = r0 * rng.uniform(0.85, 0.95)
                p1 = p0 + d * length
                if _lung_sdf_points(scene, p1)[0] < -(r1 + 1.0):
                    break
                length = max(2.0, 0.8 * length)
            else:
                continue
            segs.append(np.concatenate([p0, p1, [r0, r1]]))
            n += 1
            rc = r1 * rng.uniform(0.72, 0.85, 2)
            if rc.max() < r_min:
                continue
            e = _perp(d, rng)
            for c, sign in zip(rc, (1.0, -1.0)):
                if c >= r_min:
                    alpha = np.radians(rng.uniform(20, 45))
                    queue.append((p1, _unit(d * np.cos(alpha) + sign * e * np.sin(alpha)), float(c), gen + 1))
    scene.vessels = np.asarray(segs, float).reshape(-1, 8)


def _sample_airways(scene: Scene, rng: np.random.Generator) -> None:
    k = scene.body["k"]
    cy, cx = scene.body["c"]
    ay = scene.body["a"][0]
    lz, zb = scene.lungs[0]["lz"], scene.lungs[0]["zb"]
    carina = np.array([zb + 0.62 * lz, cy + 0.25 * ay, cx])
    top = np.array([scene.shape[0] * scene.spacing[0] + 20.0, cy + 0.3 * ay, cx])
    rows = [np.concatenate([top, carina, [8.0 * k, 7.5 * k, 2.0 * k]])]
    for lung in scene.lungs:
        h = lung["hilum"]
        r = (6.5 if lung["side"] < 0 else 5.5) * k
        rows.append(np.concatenate([carina, h, [r, 0.9 * r, 1.5 * k]]))
        for t in ((0.8, 0, 0.4), (-0.8, 0.3, 0.4)):  # upper and lower lobe bronchi
            d = _unit(np.array([t[0], t[1], t[2] * lung["side"]]) + rng.normal(0, 0.1, 3))
            p1 = h + d * 25 * k
            rows.append(np.concatenate([h, p1, [0.6 * r, 0.45 * r, 1.0 * k]]))
    scene.airways = np.asarray(rows)


def _inside_volume(scene: Scene, p: np.ndarray, margin: float) -> bool:
    ext = np.asarray(scene.shape) * np.asarray(scene.spacing)
    return bool(np.all(p >= margin) and np.all(p <= ext - np.asarray(scene.spacing) - margin))


def _random_lung_point(scene: Scene, rng: np.random.Generator, depth: float, margin: float, tries: int = 400):
    ext = np.asarray(scene.shape) * np.asarray(scene.spacing)
    for _ in range(tries):
        lung = scene.lungs[int(rng.integers(2))]
        cy, cx = lung["c"]
        b, a = lung["a"]
        p = np.array([rng.uniform(margin, ext[0] - margin), cy + rng.uniform(-b, b), cx + rng.uniform(-a, a)])
        if (_inside_volume(scene, p, margin) and _lung_sdf_points(scene, p)[0] < -depth
                and not _crowded(scene, p, depth)):
            return p
    return None


def _crowded(scene: Scene, p: np.ndarray, r: float) -> bool:
    return any(np.linalg.norm(b.centre - p) < b.radius * 1.3 + r + 3.0 for b in scene.blobs)


def _ball(centre: np.ndarray, radius: float, hu: float) -> _Blob:
    return _Blob(centre=np.asarray(centre, float), radius=float(radius), hu=float(hu), lobes=np.zeros((0, 3)),
                 lobe_amp=np.zeros(0), lobe_kappa=np.zeros(0))


def _sample_distractors(scene: Scene, rng: np.random.Generator, counts: list[int]) -> None:
    n_bif, n_scar, n_gran, n_micro = counts
    v = scene.vessels
    if n_bif and len(v):
        d = v[:, 3:6] - v[:, 0:3]
        axial = np.abs(d[:, 0]) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        ok = np.flatnonzero((axial > 0.6) & (v[:, 7] > 1.0) & (v[:, 7] < 3.5))
        ok = [i for i in ok if _inside_volume(scene, v[i, 3:6], 3.0)]
        for i in rng.permutation(ok)[:n_bif]:
            r = float(1.3 * v[i, 7])
            scene.junctions.append((v[i, 3:6].copy(), r))
            scene.distractors.append({"kind": "vessel_bifurcation", "centre": v[i, 3:6].copy(),
                                      "size_mm": round(2 * r, 3), "hu": BLOOD_HU})
    for _ in range(n_scar):
        p = _random_lung_point(scene, rng, depth=6.0, margin=8.0)
        if p is None:
            continue
        length = rng.uniform(10, 30)
        d = _unit(np.array([rng.normal(0, 0.3), rng.normal(), rng.normal()]))
        p0, p1 = p - d * length / 2, p + d * length / 2
        if _lung_sdf_points(scene, np.stack([p0, p1])).max() > -1.0:
            continue
        hu = float(rng.uniform(-150, 0))
        r = rng.uniform(0.7, 1.3)
        scene.scars.append((np.concatenate([p0, p1, [r, r]]), hu))
        scene.distractors.append({"kind": "scar", "centre": p, "size_mm": round(float(length), 3), "hu": hu})
    for kind, n, dr, hur in (("calcified_granuloma", n_gran, (2.0, 6.0), (300, 900)),
                             ("micronodule", n_micro, (1.5, 2.9), (-20, 40))):
        for _ in range(n):
            diam = rng.uniform(*dr)
            p = _random_lung_point(scene, rng, depth=diam / 2 + 2, margin=diam / 2 + 2)
            if p is None:
                continue
            hu = float(rng.uniform(*hur))
            scene.blobs.append(_ball(p, diam / 2, hu))
            scene.distractors.append({"kind": kind, "centre": p, "size_mm": round(float(diam), 3), "hu": hu})


def _sample_nodules(scene, rng, n, diam_range, types, pj, pv) -> None:
    weights = np.array([{"solid": 0.6, "part-solid": 0.15, "ground-glass": 0.25}[t] for t in types])
    for _ in range(n):
        kind = types[int(rng.choice(len(types), p=weights / weights.sum()))]
        diam = float(np.exp(rng.uniform(np.log(diam_range[0]), np.log(diam_range[1]))))
        u = rng.uniform(size=2)
        jp, vasc = bool(u[0] < pj), bool(u[0] >= pj and u[1] < pv)
        n_lobes = int(rng.integers(2, 6))
        lobes = np.stack([_unit(rng.normal(size=3)) for _ in range(n_lobes)])
        amp, kappa = rng.uniform(0.04, 0.18, n_lobes), rng.uniform(2.0, 6.0, n_lobes)
        solid_hu, ggo_hu = float(rng.uniform(0, 60)), float(rng.uniform(-700, -500))
        core = float(rng.uniform(0.35, 0.65))
        placed, first_diam = False, diam
        while not placed and diam >= 0.5 * diam_range[0]:
            blob = _Blob(centre=np.zeros(3), radius=1.0, hu=solid_hu if kind == "solid" else ggo_hu,
                         lobes=lobes, lobe_amp=amp, lobe_kappa=kappa)
            eq1 = 2 * (3 * blob.volume_mm3() / (4 * np.pi)) ** (1 / 3)
            blob.radius = diam / eq1
            if kind == "part-solid":
                blob.core_fraction, blob.core_hu = core, solid_hu
            r_out = float(blob.surface(lobes).max()) if n_lobes else diam / 2
            centre = _place(scene, rng, diam / 2, r_out, jp, vasc)
            if centre is None:
                diam *= 0.85
                if diam < 0.5 * diam_range[0] and (jp or vasc):
                    diam, jp, vasc = first_diam, False, False  # no room at the pleura or a vessel: free
                continue
            blob.centre = centre
            scene.blobs.append(blob)
            vol = blob.volume_mm3()
            solid_d = {"solid": diam, "ground-glass": 0.0, "part-solid": diam * core}[kind]
            scene.nodules.append({"diameter_mm": round(diam, 4), "volume_ml": vol / 1000.0, "type": kind,
                                  "juxtapleural": jp, "vascular": vasc, "solid_diameter_mm": round(solid_d, 4),
                                  "hu": round(solid_hu if kind != "ground-glass" else ggo_hu, 3), "centre": centre})
            placed = True
        if not placed:
            log.warning("synthetic CT seed %s: could not place a nodule; the scan has fewer", scene.seed)


def _place(scene: Scene, rng: np.random.Generator, r: float, r_out: float, jp: bool, vasc: bool):
    margin = r_out + 1.0
    if jp:
        for _ in range(200):
            lung = scene.lungs[int(rng.integers(2))]
            ext_z = scene.shape[0] * scene.spacing[0]
            z = rng.uniform(margin, ext_z - margin)
            theta = rng.uniform(0, 2 * np.pi)
            if np.cos(theta) * lung["side"] < -0.3:  # not on the mediastinal side
                continue
            u = np.array([0.0, np.sin(theta), np.cos(theta)])
            c = np.array([z, *lung["c"]])
            if _lung_sdf_points(scene, c)[0] > -r - 2:
                continue
            lo, hi = 0.0, 2 * max(lung["a"])  # bisect for the depth -0.6 r along the ray
            for _ in range(30):
                mid = (lo + hi) / 2
                if _lung_sdf_points(scene, c + u * mid)[0] < -0.6 * r:
                    lo = mid
                else:
                    hi = mid
            p = c + u * lo
            if _inside_volume(scene, p, margin) and not _crowded(scene, p, r_out):
                return p
        return None
    if vasc and len(scene.vessels):
        v = scene.vessels
        ok = np.flatnonzero((v[:, 7] > 0.8) & (v[:, 7] < 3.5))
        for i in rng.permutation(ok)[:300]:
            t = rng.uniform(0.2, 0.8)
            q = v[i, :3] + t * (v[i, 3:6] - v[i, :3])
            d = _unit(v[i, 3:6] - v[i, :3])
            p = q + _perp(d, rng) * (v[i, 6] + 0.7 * r)
            if (_inside_volume(scene, p, margin) and _lung_sdf_points(scene, p)[0] < -r_out - 1
                    and not _crowded(scene, p, r_out)):
                return p
        return None
    return _random_lung_point(scene, rng, depth=r_out + 2.0, margin=margin)


# ---------------------------------------------------------------------------------------------
# rendering


def _psf_sigma_vox(scene: Scene) -> tuple[float, float, float]:
    s_xy = scene.psf_fwhm_mm / 2.3548
    s_z = 0.25 * scene.spacing[0]
    return (s_z / scene.spacing[0], s_xy / scene.spacing[1], s_xy / scene.spacing[2])


def _noise_gain(sigma: tuple[float, ...]) -> float:
    """How much a Gaussian blur of ``sigma`` voxels (truncate 3) scales white noise's std."""
    g = 1.0
    for s in sigma:
        if s > 0:
            r = int(3.0 * s + 0.5)
            x = np.arange(-r, r + 1)
            k = np.exp(-0.5 * x**2 / s**2)
            k /= k.sum()
            g *= float(np.sqrt(np.sum(k**2)))
    return g


def _in_plane_maps(scene: Scene) -> dict:
    _, ny, nx = scene.shape
    sy, sx = scene.spacing[1:]
    y = (np.arange(ny) * sy)[:, None]
    x = (np.arange(nx) * sx)[None, :]
    b = scene.body
    q, g = _ellipse_q_g(y - b["c"][0], x - b["c"][1], *b["a"])
    ang = np.arctan2(y - b["c"][0], x - b["c"][1])
    maps = {"body_q": q.astype(np.float32), "body_ig": (1 / g).astype(np.float32),
            "fat": (b["fat"] * (0.7 + 0.6 * np.cos(ang) ** 2)).astype(np.float32), "lungs": []}
    for lung in scene.lungs:
        cy, cx = lung["c"]
        bb, aa = lung["a"]
        r0, r1 = max(0, int((cy - bb) / sy) - 2), min(ny, int((cy + bb) / sy) + 3)
        c0, c1 = max(0, int((cx - aa) / sx) - 2), min(nx, int((cx + aa) / sx) + 3)
        lq, lg = _ellipse_q_g(y[r0:r1] - cy, x[:, c0:c1] - cx, bb, aa)
        dome = lung["zb"] + lung["dome"] * (1 - np.minimum(lq, 1) ** 2)
        hu = lung["hu"] + lung["grad"] * (y[r0:r1] - cy) / bb + 0 * lq
        maps["lungs"].append({"box": (slice(r0, r1), slice(c0, c1)), "q": lq.astype(np.float32),
                              "ig": (1 / lg).astype(np.float32), "dome": dome.astype(np.float32),
                              "hu": hu.astype(np.float32)})
    sp = scene.spine
    q, g = _ellipse_q_g(y - sp["c"][0], x - sp["c"][1], *sp["r"])
    sdf = (q - 1) / g
    maps["vb_out"] = _ramp(sdf, sx)
    maps["vb_in"] = _ramp(sdf + 2.0 * b["k"], sx)
    canal_c = (sp["c"][0] + sp["r"][0] + 9.0 * b["k"], sp["c"][1])
    d = np.sqrt((y - canal_c[0]) ** 2 + (x - canal_c[1]) ** 2)
    maps["ring"] = _ramp(d - 12.0 * b["k"], sx)
    maps["canal"] = _ramp(d - 7.0 * b["k"], sx)
    st_c = (b["c"][0] - b["a"][0] + b["fat"] + 9.0 * b["k"], b["c"][1])
    q, g = _ellipse_q_g(y - st_c[0], x - st_c[1], 6.0 * b["k"], 14.0 * b["k"])
    maps["sternum"] = _ramp((q - 1) / g, sx)
    med_c = (b["c"][0] - 0.1 * b["a"][0], b["c"][1])
    q, g = _ellipse_q_g(y - med_c[0], x - med_c[1], 0.55 * b["a"][0], 0.2 * b["a"][1])
    maps["med"] = _ramp((q - 1) / g, sx)
    return maps


def _ramp(sdf, width: float) -> np.ndarray:
    """Partial-volume fraction of a boundary at signed distance ``sdf`` (mm, negative inside)."""
    f = np.asarray(sdf, np.float32) * np.float32(-1.0 / width)
    f += np.float32(0.5)
    return np.clip(f, 0.0, 1.0, out=f)


def _paint(v: np.ndarray, f: np.ndarray, hu) -> None:
    """v += f * (hu - v), in place."""
    t = np.subtract(hu, v, dtype=np.float32)
    t *= f
    v += t


def _render_slab(scene: Scene, maps: dict, a: int, b: int) -> np.ndarray:
    """The noise-free, unblurred HU of slices [a, b) (float32, (b - a, rows, cols))."""
    _, ny, nx = scene.shape
    sz, sy, sx = scene.spacing
    z = (np.arange(a, b) * sz).astype(np.float32)
    zz = z[:, None, None]
    body = scene.body
    s_body = 1.0 - 0.04 * ((z - body["zc"]) / max(body["ext"], 1.0)) ** 2
    sdf = maps["body_q"][None] - s_body[:, None, None].astype(np.float32)
    sdf *= maps["body_ig"][None]
    v = _ramp(sdf, sx)
    v *= np.float32(FAT_HU - AIR_HU)
    v += np.float32(AIR_HU)
    sdf += maps["fat"][None]
    _paint(v, _ramp(sdf, sx), SOFT_HU)
    del sdf
    lung0 = scene.lungs[0]
    in_chest = np.clip((z - lung0["zb"] + 20) / 20, 0, 1) * np.clip((lung0["zb"] + lung0["lz"] - z) / 20, 0, 1)
    _paint(v, maps["med"][None] * in_chest[:, None, None].astype(np.float32), FAT_HU)
    # heart
    hc, ha = np.asarray(scene.heart["c"]), np.asarray(scene.heart["a"])
    heart = np.zeros_like(v)
    k0, k1 = max(a, int((hc[2] - ha[2]) / sz) - 1), min(b, int((hc[2] + ha[2]) / sz) + 2)
    r0, r1 = max(0, int((hc[0] - ha[0]) / sy) - 1), min(ny, int((hc[0] + ha[0]) / sy) + 2)
    c0, c1 = max(0, int((hc[1] - ha[1]) / sx) - 1), min(nx, int((hc[1] + ha[1]) / sx) + 2)
    if k1 > k0 and r1 > r0 and c1 > c0:
        yy = (np.arange(r0, r1) * sy)[None, :, None]
        xx = (np.arange(c0, c1) * sx)[None, None, :]
        zk = (np.arange(k0, k1) * sz)[:, None, None]
        q = np.sqrt(((yy - hc[0]) / ha[0]) ** 2 + ((xx - hc[1]) / ha[1]) ** 2 + ((zk - hc[2]) / ha[2]) ** 2)
        heart[k0 - a:k1 - a, r0:r1, c0:c1] = _ramp((q - 1) * ha.min(), sx)
        _paint(v[k0 - a:k1 - a, r0:r1, c0:c1], heart[k0 - a:k1 - a, r0:r1, c0:c1], SOFT_HU)
    # lungs
    for lung, m in zip(scene.lungs, maps["lungs"]):
        s = _lung_profile(lung, z).astype(np.float32)
        live = np.flatnonzero(s > 0)
        if not live.size:
            continue
        ka, kb = int(live[0]), int(live[-1]) + 1
        box = (slice(ka, kb), *m["box"])
        f = _ramp((m["q"][None] - s[ka:kb, None, None]) * m["ig"][None], sx)
        f *= _ramp(m["dome"][None] - zz[ka:kb], sz)
        f *= 1 - heart[box]
        _paint(v[box], f, m["hu"][None])
    # spine, sternum
    disc = ((z - scene.spine["phase"]) % scene.spine["period"]).astype(np.float32)
    bone_z = _ramp(scene.spine["disc"] - disc, sz)[:, None, None]
    _paint(v, maps["vb_out"][None] * bone_z, CORTEX_HU)
    _paint(v, maps["vb_in"][None] * bone_z, MARROW_HU)
    _paint(v, maps["ring"][None], CORTEX_HU * 0.8)
    _paint(v, maps["canal"][None], 20.0)
    st_z = np.clip((z - lung0["zb"] - 0.3 * lung0["lz"]) / 5, 0, 1) * np.clip((lung0["zb"] + lung0["lz"] - z) / 5, 0, 1)
    _paint(v, maps["sternum"][None] * st_z[:, None, None].astype(np.float32), 450.0)
    # ribs: cortex and marrow
    if scene.ribs:
        cortex, marrow = np.zeros_like(v), np.zeros_like(v)
        for seg in np.concatenate(scene.ribs):
            _tube(seg, a, scene.spacing, [(cortex, 0.0), (marrow, -1.3 * body["k"])])
        _paint(v, cortex, CORTEX_HU)
        _paint(v, marrow, MARROW_HU)
        del cortex, marrow
    # vessels and the junction balls of the bifurcation distractors
    vessels = np.zeros_like(v)
    for seg in scene.vessels:
        _tube(seg, a, scene.spacing, [(vessels, 0.0)])
    for c, r in scene.junctions:
        res = _blob_fraction(_ball(c, r, BLOOD_HU), a, scene.spacing, vessels.shape)
        if res is not None:
            np.maximum(vessels[res[1]], res[0], out=vessels[res[1]])
    _paint(v, vessels, BLOOD_HU)
    del vessels
    # airways: wall, then lumen
    wall, lumen = np.zeros_like(v), np.zeros_like(v)
    for row in scene.airways:
        _tube(row[:8], a, scene.spacing, [(wall, float(row[8])), (lumen, 0.0)])
    _paint(v, wall, AIRWAY_WALL_HU)
    _paint(v, lumen, AIR_HU)
    del wall, lumen
    # objects that only raise the attenuation: scars, granulomas, micronodules, nodules
    for seg, hu in scene.scars:
        f = np.zeros_like(v)
        _tube(seg, a, scene.spacing, [(f, 0.0)])
        np.maximum(v, v + f * (hu - v), out=v)
    for blob in scene.blobs:
        _paint_blob(v, blob, a, scene.spacing)
    return v


def _box(lo_mm, hi_mm, a: int, shape, spacing):
    lo = np.floor(np.asarray(lo_mm) / spacing).astype(int)
    hi = np.ceil(np.asarray(hi_mm) / spacing).astype(int) + 1
    lo[0] -= a
    hi[0] -= a
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    return lo, hi


def _tube(seg: np.ndarray, a: int, spacing, layers: list[tuple[np.ndarray, float]]) -> None:
    """Max the partial-volume fraction of a tapered tube (p0, p1, r0, r1; grid mm) into layers,
    each grown by its offset (mm), for the slab starting at slice ``a``."""
    s = np.asarray(spacing, float)
    p0, p1, r0, r1 = seg[:3], seg[3:6], float(seg[6]), float(seg[7])
    grow = max(g for _, g in layers)
    pad = max(r0, r1) + grow + s.max()
    box = _box(np.minimum(p0, p1) - pad, np.maximum(p0, p1) + pad, a, layers[0][0].shape, s)
    if box is None:
        return
    lo, hi = box
    dz = ((np.arange(lo[0], hi[0]) + a) * s[0] - p0[0]).astype(np.float32)[:, None, None]
    dy = (np.arange(lo[1], hi[1]) * s[1] - p0[1]).astype(np.float32)[None, :, None]
    dx = (np.arange(lo[2], hi[2]) * s[2] - p0[2]).astype(np.float32)[None, None, :]
    d = (p1 - p0).astype(np.float32)
    length2 = max(float(d @ d), 1e-9)
    t = np.clip((dz * d[0] + dy * d[1] + dx * d[2]) / np.float32(length2), 0, 1)
    ez, ey, ex = dz - t * d[0], dy - t * d[1], dx - t * d[2]
    dist = np.sqrt(ez * ez + ey * ey + ex * ex)
    w = np.sqrt((ez * s[0]) ** 2 + (ey * s[1]) ** 2 + (ex * s[2]) ** 2) / np.maximum(dist, 1e-3)
    w = np.maximum(w, np.float32(s.min()))
    sdf = dist - (r0 + t * (r1 - r0))
    sl = tuple(slice(lo[i], hi[i]) for i in range(3))
    for layer, g in layers:
        f = np.clip(0.5 - (sdf - g) / w, 0, 1)
        view = layer[sl]
        np.maximum(view, f, out=view)


def _blob_fraction(blob: _Blob, a: int, spacing, shape: tuple[int, ...], scale: float = 1.0):
    """Partial-volume fraction of a blob (its surface scaled by ``scale``) in the slab of ``shape``
    starting at slice ``a``: (fraction, index slices), or None when it is outside."""
    s = np.asarray(spacing, float)
    r_max = blob.radius * scale * (1 + float(blob.lobe_amp.sum())) + s.max()
    box = _box(blob.centre - r_max, blob.centre + r_max, a, shape, s)
    if box is None:
        return None
    lo, hi = box
    dz = ((np.arange(lo[0], hi[0]) + a) * s[0] - blob.centre[0]).astype(np.float32)[:, None, None]
    dy = (np.arange(lo[1], hi[1]) * s[1] - blob.centre[1]).astype(np.float32)[None, :, None]
    dx = (np.arange(lo[2], hi[2]) * s[2] - blob.centre[2]).astype(np.float32)[None, None, :]
    dist = np.sqrt(dz * dz + dy * dy + dx * dx)
    inv = 1.0 / np.maximum(dist, 1e-3)
    u = np.stack(np.broadcast_arrays(dz * inv, dy * inv, dx * inv), axis=-1)
    w = np.maximum(np.sqrt(((u * s.astype(np.float32)) ** 2).sum(-1)), np.float32(s.min()))
    f = np.clip(0.5 - (dist - scale * blob.surface(u)) / w, 0, 1).astype(np.float32)
    return f, tuple(slice(lo[i], hi[i]) for i in range(3))


def _paint_blob(v: np.ndarray, blob: _Blob, a: int, spacing) -> None:
    parts = [(1.0, blob.hu)] + ([(blob.core_fraction, blob.core_hu)] if blob.core_fraction else [])
    for scale, hu in parts:
        res = _blob_fraction(blob, a, spacing, v.shape, scale)
        if res is None:
            continue
        f, sl = res
        view = v[sl]
        np.maximum(view, view + f * (np.float32(hu) - view), out=view)


# ---------------------------------------------------------------------------------------------
# geometry


def _direction(scene: Scene) -> np.ndarray:
    d = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    if scene.flip_z:
        d[2, 0] = -1.0
    return d


def _image_origin(scene: Scene) -> tuple[float, float, float]:
    o = np.asarray(scene.origin_lps, float)
    if scene.flip_z:
        o[2] += (scene.shape[0] - 1) * scene.spacing[0]
    return tuple(float(v) for v in o)  # type: ignore[return-value]


def _lps(scene: Scene, p: np.ndarray) -> tuple[float, float, float]:
    o = np.asarray(scene.origin_lps)
    return (float(o[0] + p[2]), float(o[1] + p[1]), float(o[2] + p[0]))


def _voxel(scene: Scene, p: np.ndarray) -> tuple[float, float, float]:
    v = np.asarray(p, float) / np.asarray(scene.spacing)
    if scene.flip_z:
        v[0] = scene.shape[0] - 1 - v[0]
    return tuple(float(c) for c in v)  # type: ignore[return-value]


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(phi), np.sin(phi) * np.sin(theta), np.sin(phi) * np.cos(theta)], axis=1).astype(np.float32)


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m medsight.data.synthetic_ct",
                                description="Write a seeded synthetic chest-CT dataset with LUNA16-style truth.")
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=None)
    p.add_argument("--n-nodules", type=int, default=None)
    args = p.parse_args(argv)
    write_dataset(args.out, args.n, args.seed, shape_zyx=tuple(args.shape) if args.shape else None,
                  n_nodules=args.n_nodules)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())

