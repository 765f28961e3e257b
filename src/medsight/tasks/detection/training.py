"""What the shared trainer needs to train the nodule detector: patches, loss, validation.

* :class:`TrainScan`: a prepared training scan held in memory (float16 on the network grid)
  with its nodules and excluded annotations in grid indices.
* :class:`NodulePatches` draws training patches: centred (with jitter) on a nodule with
  probability ``p_nodule``, on an excluded annotation (a lesion that counts neither way: a
  nodule under 3 mm; in the synthetic data also micronodules and calcified granulomas) with
  ``p_excluded``, else anywhere in the lung crop. The target is a
  ball of each nodule's diameter at its centre (the class map the network learns); a ball
  around each excluded annotation is left out of the loss (``ignore_radius_mm``, or the
  annotation's radius + 1 mm when it has a size). An excluded lesion counts neither way when
  scored, and LUNA16's excluded list holds nodules under 3 mm: taught as background, they
  teach the network that a small solid blob is background (1.0.0, trained so, found 4 of the
  benchmark's 38 nodules under 6 mm). Patches
  are mirrored along every axis and turned by quarter turns in the axial plane (a nodule has no
  handedness), and with ``p_slab`` cut to a slab of 8-40 slices, air outside, as the real
  11-16-slice LIDC slabs are. The trainer re-seeds it every epoch. With ``p_hard`` a patch is
  centred on a **hard negative** instead: a place where the network being trained scores a
  nodule that is not there (:meth:`DetectionHooks.mine`). With ``p_negative`` it is centred on
  a **known non-nodule** (``data.negatives``: the class-0 rows of a LUNA16 candidates file; the
  synthetic data's vessel bifurcations end-on and scars), which the target calls background
  like any voxel outside a nodule. Where one lies in an excluded annotation's ball, the ball
  still wins (LUNA16's class-0 candidates can sit on an excluded nodule under 3 mm).
* :class:`DetectionHooks`: a batch soft Dice over the nodule class plus a cross-entropy, both
  counting each voxel by its weight (:func:`weighted_dice`; with weights 0/1 it is MONAI's
  ``DiceLoss(batch=True)`` on the voxels in the loss). A nodule's voxels can be weighted up so
  that every nodule counts about alike (:func:`ball_target`, ``max_voxel_weight``: the shipped
  3.0.0 uses 40; a plain per-voxel loss counts a 20 mm nodule ~300 times a 3 mm one, and the
  network learnt to miss nodules under 6 mm), and ``nodule_sampling: by_size`` centres patches
  on small nodules more often; optionally with label smoothing; and validation that runs the
  whole detector on a few validation scans and scores it the LUNA16 way (``val_cpm``). After
  each validation it mines ``mine_scans`` training scans in turn (the network over the scan's
  crop; each component of its probability above ``mine_threshold`` whose peak is in no nodule's
  ball and no excluded annotation's is a false positive, the ``max_hard`` highest kept) and
  gives them to the patches: the false positives the network ranks above small nodules are
  drawn on purpose rather than by chance, as a detector's hard-negative sampler does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medsight.engine.trainer import TrainingHooks
from medsight.metrics.froc import froc
from medsight.metrics.luna16_csv import Finding as FrocFinding
from medsight.metrics.luna16_csv import Nodule as FrocNodule
from medsight.models.manifest import DetectionInference
from medsight.tasks.detection.scan import PreparedScan

__all__ = ["TrainScan", "NodulePatches", "DetectionHooks"]


@dataclass
class TrainScan:
    uid: str
    x: np.ndarray            # (z, y, x) float16, normalised
    nodules: np.ndarray      # (N, 4): z, y, x grid index and radius in voxels
    excluded: np.ndarray     # (M, 4): z, y, x grid index and the radius left out of the loss, voxels
    negatives: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3)))  # (K, 3) grid index

    @classmethod
    def of(cls, uid: str, scan: PreparedScan, nodules: Sequence[Sequence[float]],
           excluded: Sequence[Sequence[float]], *, ignore_radius_mm: float = 3.0,
           negatives: Sequence[Sequence[float]] = ()) -> TrainScan:
        """``nodules`` and ``excluded`` as ``(x, y, z, diameter_mm)`` in patient mm; an excluded
        annotation without a size (diameter <= 0) is left out of the loss within
        ``ignore_radius_mm``, one with a size within its radius + 1 mm; ``negatives`` are known
        non-nodules, ``(x, y, z)`` patient mm (patch centres, background)."""
        sp = float(np.mean(scan.grid.spacing))
        nod = np.zeros((0, 4))
        if len(nodules):
            arr = np.asarray(nodules, float)
            nod = np.column_stack([scan.to_grid(arr[:, :3]), arr[:, 3] / 2.0 / sp])
        exc = np.zeros((0, 4))
        if len(excluded):
            arr = np.asarray(excluded, float)
            radius = np.where(arr[:, 3] > 0, arr[:, 3] / 2.0 + 1.0, float(ignore_radius_mm)) / sp
            exc = np.column_stack([scan.to_grid(arr[:, :3]), radius])
        neg = np.zeros((0, 3))
        if len(negatives):
            neg = scan.to_grid(np.asarray(negatives, float)[:, :3])
        return cls(uid, scan.x[0].astype(np.float16), nod, exc, neg)


def _patch(x: np.ndarray, centre: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` patch of ``x`` around ``centre`` (zero outside), and its corner index."""
    size = np.asarray(size, int)
    lo = np.round(centre).astype(int) - size // 2
    out = np.zeros(tuple(size), np.float32)
    src_lo = np.maximum(lo, 0)
    src_hi = np.minimum(lo + size, x.shape)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - lo
        dst_hi = dst_lo + (src_hi - src_lo)
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = x[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
    return out, lo


def _balls(centres: np.ndarray, corner: np.ndarray, size: Sequence[int]):
    """``(inside, radius)`` of each ball of ``centres`` (rows z, y, x, radius in voxels) that
    reaches the patch at ``corner``."""
    grids = None
    for z, r, c, rad in centres:
        local = np.array([z, r, c]) - corner
        if np.any(local + rad < 0) or np.any(local - rad > np.asarray(size) - 1):
            continue
        if grids is None:
            grids = np.ogrid[tuple(slice(0, n) for n in size)]
        radius = max(float(rad), 0.75)
        yield sum((g - float(v)) ** 2 for g, v in zip(grids, local)) <= radius ** 2, radius


def ball_target(nodules: np.ndarray, corner: np.ndarray, size: Sequence[int], *, ref_voxels: float = 524.0,
                max_weight: float = 30.0, ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class map of a patch at ``corner`` (1 inside each nodule's ball) and the loss's voxel
    weights: 1 for background; inside a nodule ``ref_voxels`` over its ball's voxel count,
    between 1 and ``max_weight``, so a 3-5 mm nodule can weigh as much as a 10 mm one (a
    per-voxel loss learns the big nodules first: volume grows with the cube); 0 (out of the
    loss) for background inside a ball of ``ignore`` (rows z, y, x, radius in voxels: the
    excluded annotations)."""
    y = np.zeros(tuple(size), np.int64)
    w = np.ones(tuple(size), np.float32)
    for inside, radius in _balls(nodules, corner, size):
        y[inside] = 1
        w[inside] = float(np.clip(ref_voxels / (4.0 / 3.0 * np.pi * radius ** 3), 1.0, max_weight))
    if ignore is not None:
        for inside, _ in _balls(ignore, corner, size):
            w[inside & (y == 0)] = 0.0
    return y, w


class NodulePatches(torch.utils.data.Dataset):
    """Random training patches (module docstring); ``length`` patches an epoch (the trainer's
    steps per epoch times its batch size: the index is not used, every draw is random)."""

    def __init__(self, scans: Sequence[TrainScan], *, patch_size: Sequence[int], p_nodule: float,
                 p_excluded: float, jitter: int, p_slab: float, length: int = 800, seed: int = 0,
                 ref_radius: float = 5.0, max_weight: float = 30.0, nodule_sampling: str = "uniform",
                 p_hard: float = 0.0, p_negative: float = 0.0) -> None:
        if not scans:
            raise ValueError("NodulePatches needs at least one scan")
        self.scans = list(scans)
        self.size = [int(s) for s in patch_size]
        self.p_nodule, self.p_excluded, self.jitter, self.p_slab = p_nodule, p_excluded, int(jitter), p_slab
        self.p_hard, self.p_negative = float(p_hard), float(p_negative)
        self.hard: dict[int, np.ndarray] = {}  # scan index -> (K, 3) grid centres of its mined false positives
        self.length = int(length)
        # a nodule of ref_radius (voxels) weighs 1 a voxel, a smaller one up to max_weight (ball_target)
        self.ref_voxels, self.max_weight = 4.0 / 3.0 * np.pi * float(ref_radius) ** 3, float(max_weight)
        if nodule_sampling not in ("uniform", "by_size"):
            raise ValueError(f"nodule_sampling is 'uniform' or 'by_size', not {nodule_sampling!r}")
        # by_size: a nodule is drawn with odds ref_radius / its radius (at least 1), so a 3 mm nodule
        # is centred on ~3x as often as a 10 mm one; uniform: every nodule alike
        self.by_size = nodule_sampling == "by_size"
        self.nodule_odds = [np.clip(ref_radius / np.maximum(s.nodules[:, 3], 0.5), 1.0, None) for s in self.scans]
        self.with_nodules = [i for i, s in enumerate(self.scans) if len(s.nodules)]
        self.scan_odds = np.array([self.nodule_odds[i].sum() for i in self.with_nodules], float)
        self.with_excluded = [i for i, s in enumerate(self.scans) if len(s.excluded)]
        self.with_negatives = [i for i, s in enumerate(self.scans) if len(s.negatives)]
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def set_hard(self, i: int, centres: np.ndarray) -> None:
        """The hard negatives of scan ``i`` (rows z, y, x on its grid), replacing its earlier ones."""
        centres = np.asarray(centres, float).reshape(-1, 3)
        if len(centres):
            self.hard[i] = centres
        else:
            self.hard.pop(i, None)

    def __len__(self) -> int:
        return self.length

    def _centre(self) -> tuple[TrainScan, np.ndarray]:
        rng = self.rng
        u = rng.random()
        if u < self.p_nodule and self.with_nodules:
            if self.by_size:
                i = self.with_nodules[rng.choice(len(self.with_nodules), p=self.scan_odds / self.scan_odds.sum())]
                s, odds = self.scans[i], self.nodule_odds[i]
                k = rng.choice(len(s.nodules), p=odds / odds.sum())
            else:
                s = self.scans[self.with_nodules[rng.integers(len(self.with_nodules))]]
                k = rng.integers(len(s.nodules))
            c = s.nodules[k, :3] + rng.integers(-self.jitter, self.jitter + 1, 3)
        elif u < self.p_nodule + self.p_excluded and self.with_excluded:
            s = self.scans[self.with_excluded[rng.integers(len(self.with_excluded))]]
            c = s.excluded[rng.integers(len(s.excluded)), :3] + rng.integers(-self.jitter, self.jitter + 1, 3)
        elif u < self.p_nodule + self.p_excluded + self.p_hard and self.hard:
            keys = sorted(self.hard)
            i = keys[rng.integers(len(keys))]
            s, hard = self.scans[i], self.hard[i]
            c = hard[rng.integers(len(hard))] + rng.integers(-self.jitter, self.jitter + 1, 3)
        elif u < self.p_nodule + self.p_excluded + self.p_hard + self.p_negative and self.with_negatives:
            s = self.scans[self.with_negatives[rng.integers(len(self.with_negatives))]]
            c = s.negatives[rng.integers(len(s.negatives))] + rng.integers(-self.jitter, self.jitter + 1, 3)
        else:
            s = self.scans[rng.integers(len(self.scans))]
            c = np.array([rng.uniform(0, n) for n in s.x.shape])
        return s, np.asarray(c, float)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng
        s, c = self._centre()
        x, corner = _patch(s.x, c, self.size)
        y, w = ball_target(s.nodules, corner, self.size, ref_voxels=self.ref_voxels, max_weight=self.max_weight,
                           ignore=s.excluded)
        if rng.random() < self.p_slab:  # a thin slab: air above and below
            half = int(rng.integers(4, 21))
            mid = self.size[0] // 2 + int(rng.integers(-half, half + 1)) // 2
            a, b = max(0, mid - half), min(self.size[0], mid + half)
            x[:a] = 0.0
            x[b:] = 0.0
            y[:a] = 0
            y[b:] = 0
            w[:a] = 1.0
            w[b:] = 1.0
        for axis in range(3):
            if rng.random() < 0.5:
                x, y, w = np.flip(x, axis), np.flip(y, axis), np.flip(w, axis)
        if self.size[1] == self.size[2]:
            k = int(rng.integers(4))
            x, y, w = (np.rot90(a, k, axes=(1, 2)) for a in (x, y, w))
        x = x * float(rng.uniform(0.95, 1.05)) + float(rng.normal(0, 0.01))
        return (torch.from_numpy(np.ascontiguousarray(x, np.float32))[None],
                torch.from_numpy(np.ascontiguousarray(y))[None], torch.from_numpy(np.ascontiguousarray(w))[None])


def weighted_dice(p: torch.Tensor, y: torch.Tensor, w: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Batch soft Dice loss of the nodule probability ``p`` against ``y``, each voxel counted
    ``w`` times. With weights of 0 and 1 it is MONAI's ``DiceLoss(include_background=False,
    batch=True)`` over the voxels of weight 1; with a small nodule's voxels weighted up
    (:func:`ball_target`) every nodule counts about alike, where a plain Dice counts each by its
    volume (a 20 mm nodule 300x a 3 mm one). MONAI's DiceLoss takes class weights, not voxel
    weights, hence these three lines."""
    t = (y == 1).to(p.dtype)
    inter = (w * p * t).sum()
    return 1.0 - (2.0 * inter + smooth) / ((w * p).sum() + (w * t).sum() + smooth)


def froc_of(detections: dict[str, list[Any]], truth: dict[str, list[Sequence[float]]],
            excluded: dict[str, list[Sequence[float]]], *, min_diameter_mm: float | None = None,
            threshold: float | None = None, n_boot: int = 0, seed: int = 0):
    """The FROC of per-scan detections (``center_mm`` and ``score``) against per-scan truth
    ``(x, y, z, diameter_mm)``."""
    ann = [FrocNodule(u, tuple(n[:3]), float(n[3])) for u, ns in truth.items() for n in ns]
    exc = [FrocNodule(u, tuple(n[:3]), float(n[3])) for u, ns in excluded.items() for n in ns]
    finds = [FrocFinding(u, tuple(d.center_mm), float(d.score), float(d.diameter_mm))
             for u, ds in detections.items() for d in ds]
    return froc(ann, finds, scans=list(detections), excluded=exc, min_diameter_mm=min_diameter_mm,
                threshold=threshold, n_boot=n_boot, seed=seed)


class DetectionHooks(TrainingHooks):
    """The trainer's view of detection (module docstring)."""

    def __init__(self, *, val_scans: Sequence[tuple[str, PreparedScan, list, list]],
                 settings: DetectionInference, label_smoothing: float = 0.0, patches: NodulePatches | None = None,
                 mine_scans: int = 0, mine_threshold: float = 0.5, max_hard: int = 8) -> None:
        self.label_smoothing = float(label_smoothing)
        self.val_scans = list(val_scans)
        self.settings = settings
        self.patches, self.mine_scans = patches, int(mine_scans)
        self.mine_threshold, self.max_hard = float(mine_threshold), int(max_hard)
        self._next = 0  # the training scan mined next (round robin)

    def mine(self, network: torch.nn.Module) -> int:
        """Hard negatives of the next ``mine_scans`` training scans (module docstring) handed to
        the patches; returns how many are held in all."""
        from scipy import ndimage

        from medsight.engine.sliding import predict_probabilities

        if self.patches is None or self.mine_scans <= 0:
            return 0
        scans, s = self.patches.scans, self.settings
        for _ in range(min(self.mine_scans, len(scans))):
            i, self._next = self._next, (self._next + 1) % len(scans)
            scan = scans[i]
            prob = predict_probabilities(network, torch.from_numpy(scan.x.astype(np.float32))[None],
                                         patch_size=s.patch_size, overlap=s.overlap, sw_batch_size=s.sw_batch_size,
                                         precision=s.precision)[1].numpy()
            labels, n = ndimage.label(prob > self.mine_threshold, structure=np.ones((3, 3, 3), bool))
            if not n:
                self.patches.set_hard(i, np.zeros((0, 3)))
                continue
            ks = np.arange(1, n + 1)
            peaks = np.array(ndimage.maximum_position(prob, labels, ks), float).reshape(-1, 3)
            scores = np.asarray(ndimage.maximum(prob, labels, ks), float)
            marked = np.concatenate([scan.nodules, scan.excluded])  # z, y, x, radius (voxels)
            if len(marked):
                d2 = ((peaks[:, None, :] - marked[None, :, :3]) ** 2).sum(-1)
                false = ~(d2 <= np.maximum(marked[None, :, 3], 1.0) ** 2).any(1)
            else:
                false = np.ones(len(peaks), bool)
            order = np.argsort(-scores[false], kind="stable")[: self.max_hard]
            self.patches.set_hard(i, peaks[false][order])
        return int(sum(len(v) for v in self.patches.hard.values()))

    def training_step(self, network: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y, w = batch
        logits = network(x.contiguous(memory_format=torch.channels_last_3d)).float()
        ce = torch.nn.functional.cross_entropy(logits, y[:, 0], reduction="none", label_smoothing=self.label_smoothing)
        return weighted_dice(torch.softmax(logits, 1)[:, 1:], y, w) + (ce * w[:, 0]).sum() / w.sum().clamp_min(1.0)

    def validate(self, network: torch.nn.Module) -> dict[str, float]:
        from medsight.errors import DataError
        from medsight.tasks.detection.detect import detect

        detections, truth, excluded = {}, {}, {}
        for uid, scan, nodules, exc in self.val_scans:
            detections[uid] = detect(network, scan, self.settings)[0]
            truth[uid], excluded[uid] = nodules, exc
        mined = {"hard_negatives": float(self.mine(network))} if self.mine_scans else {}
        network.train()
        try:
            r = froc_of(detections, truth, excluded)
        except DataError:  # no nodule in the validation scans
            return {"val_cpm": 0.0, **mined}
        fps = float(np.mean([len(d) for d in detections.values()]))
        return {"val_cpm": float(r.cpm), "val_sens_1fp": float(r.sensitivity_at(1.0)), "val_candidates": fps,
                **mined}
