"""What the shared trainer needs to train a segmentation network: patches, loss, validation.

* :class:`PatchDataset` draws patches from preprocessed cases, held in memory (lists of
  arrays) or read on demand (any other sequence, e.g. the views of
  :class:`medsight.data.streaming.PreparedCases`): each item pads a case to at least the patch
  size and crops one patch with MONAI's ``RandCropByPosNegLabeld``, centred on foreground with
  probability ``foreground_ratio`` (nnU-Net's foreground over-sampling), then applies the
  augmentation preset. Random state is re-seeded by the trainer every epoch, so a resumed run
  draws the same patches.
* :class:`SegmentationHooks` gives the loss (MONAI ``DiceCELoss``: soft Dice over the
  foreground labels, computed over the batch, plus cross-entropy; with deep supervision, a
  weighted sum over the decoder's outputs) and validation: sliding-window prediction of each
  validation case on the network grid and its Dice per label (``val_dice`` is the mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medsight.engine.sliding import predict_probabilities
from medsight.engine.trainer import TrainingHooks

__all__ = ["PatchDataset", "SegmentationHooks", "dice_per_class"]


def dice_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> list[float]:
    """Dice of classes 1..n_classes-1 between two class-index maps (1.0 when both are empty)."""
    out = []
    for k in range(1, n_classes):
        p, r = pred == k, ref == k
        s = int(p.sum()) + int(r.sum())
        out.append(1.0 if s == 0 else 2.0 * int(np.count_nonzero(p & r)) / s)
    return out


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches from preprocessed cases.

    Args:
        images: per case, ``(C, *spatial)`` float32 on the network grid. A list is padded and
            held in memory; another sequence is indexed (and padded) on each draw.
        masks: per case, ``(*spatial)`` uint8 class indices on the same grid (a list or a sequence,
            as ``images``).
        patch_size: patch shape in voxels.
        foreground_ratio: probability that a patch is centred on a foreground voxel.
        samples_per_volume: patches drawn per case and epoch.
        augmentation: a MONAI ``Compose`` over keys ``image`` and ``label``, or None.
        mirror_axes: spatial axes along which a patch is mirrored with probability 0.5 each.
        seed: initial random state (the trainer re-seeds every epoch).
    """

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, patch_size: Sequence[int],
                 foreground_ratio: float, samples_per_volume: int, augmentation: Any | None = None,
                 mirror_axes: Sequence[int] = (), seed: int = 0) -> None:
        from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, SpatialPad

        if len(images) != len(masks) or not len(images):
            raise ValueError("PatchDataset needs as many masks as images, and at least one case")
        self.pad = SpatialPad(spatial_size=list(patch_size), mode="constant", value=0.0)
        self.streamed = not (isinstance(images, list) and isinstance(masks, list))
        if self.streamed:  # read on demand: nothing held here
            self.images, self.masks = images, masks
        else:
            self.images = [self._pad_image(x) for x in images]
            self.masks = [self._pad_mask(m) for m in masks]
        pos = float(foreground_ratio)
        self.crop = RandCropByPosNegLabeld(keys=["image", "label"], label_key="label", spatial_size=list(patch_size),
                                           pos=pos, neg=1.0 - pos if pos < 1 else 0.0, num_samples=1)
        self.augmentation = augmentation
        self.mirror = Compose([RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=int(a))
                               for a in mirror_axes]) if mirror_axes else None
        self.samples_per_volume = int(samples_per_volume)
        self.reseed(seed)

    def _pad_image(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.pad(torch.from_numpy(x)))

    def _pad_mask(self, m: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.pad(torch.from_numpy(np.ascontiguousarray(m)[None])))

    def __len__(self) -> int:
        return len(self.images) * self.samples_per_volume

    def reseed(self, seed: int) -> None:
        """Make the next epoch's patches and augmentation a function of ``seed`` alone."""
        self.crop.set_random_state(seed=seed % 2**32)
        if self.augmentation is not None:
            self.augmentation.set_random_state(seed=(seed + 1) % 2**32)
        if self.mirror is not None:
            self.mirror.set_random_state(seed=(seed + 2) % 2**32)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = i % len(self.images)
        if self.streamed:
            image, mask = self._pad_image(self.images[k]), self._pad_mask(self.masks[k])
        else:
            image, mask = self.images[k], self.masks[k]
        d = self.crop({"image": image, "label": mask})[0]
        if self.augmentation is not None:
            d = self.augmentation(d)
        if self.mirror is not None:
            d = self.mirror(d)
        x, y = d["image"], d["label"]
        x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
        y = y.as_tensor() if hasattr(y, "as_tensor") else torch.as_tensor(y)
        return x.float().contiguous(), y.round().long().contiguous()


class SegmentationHooks(TrainingHooks):
    """The trainer's view of segmentation.

    Args:
        n_classes: classes including background.
        val_images, val_masks: validation cases on the network grid (as for PatchDataset; a
            sequence that is not a list is read case by case at each validation).
        names: class names, index 0 being background.
        patch_size, overlap, sw_batch_size, precision: sliding-window settings for validation.
        deep_supervision: the network returns stacked decoder outputs while training.
    """

    def __init__(self, *, n_classes: int, val_images: Sequence[np.ndarray], val_masks: Sequence[np.ndarray],
                 names: Sequence[str], patch_size: Sequence[int], overlap: float = 0.5, sw_batch_size: int = 4,
                 precision: str = "fp32", deep_supervision: bool = False) -> None:
        from monai.losses import DiceCELoss

        self.loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True,
                                  smooth_nr=1e-5, smooth_dr=1e-5)
        self.n_classes = n_classes
        self.val_images = val_images
        self.val_masks = val_masks
        self.names = list(names)
        self.patch_size = list(patch_size)
        self.overlap, self.sw_batch_size, self.precision = overlap, sw_batch_size, precision
        self.deep_supervision = deep_supervision

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.deep_supervision and outputs.ndim == targets.ndim + 1:  # (B, heads, K, *spatial)
            heads = outputs.shape[1]
            w = torch.tensor([0.5 ** i for i in range(heads)])
            w = w / w.sum()
            return sum(w[i] * self.loss_fn(outputs[:, i].float(), targets) for i in range(heads))  # type: ignore[return-value]
        return self.loss_fn(outputs.float(), targets)

    def training_step(self, network: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch[0], batch[1]
        if x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.loss(network(x), y)

    def validate(self, network: torch.nn.Module) -> dict[str, float]:
        if not len(self.val_images):
            return {"val_dice": 0.0}
        scores = []
        for i in range(len(self.val_images)):
            x, y = torch.from_numpy(self.val_images[i]), self.val_masks[i]
            p = predict_probabilities(network, x, patch_size=self.patch_size, overlap=self.overlap,
                                      sw_batch_size=self.sw_batch_size, precision=self.precision)
            scores.append(dice_per_class(p.argmax(0).numpy(), y, self.n_classes))
        network.train()
        per = np.mean(np.asarray(scores), axis=0)
        out = {"val_dice": float(per.mean())}
        out.update({f"val_dice_{n}": float(v) for n, v in zip(self.names[1:], per)})
        return out
