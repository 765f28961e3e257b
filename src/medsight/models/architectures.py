"""Registered architectures. MONAI networks where MONAI has them; the reference design's
small CNN written out layer for layer, because it is the reproduction target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from medsight.errors import ConfigError
from medsight.models.registry import register_model

__all__ = ["ClassicCNN", "Ensemble"]


class ClassicCNN(nn.Module):
    """The reference design's Keras CNN: Conv 32 3×3 ReLU → MaxPool 2 → Flatten →
    Dense 128 ReLU → Dense ``num_classes`` (softmax is applied by the task, not here).

    Keras defaults are kept: 'valid' padding, Glorot-uniform kernels, zero biases.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, num_classes: int, input_size: Sequence[int]) -> None:
        super().__init__()
        if len(input_size) != spatial_dims:
            raise ConfigError(f"classic-cnn: input_size {list(input_size)} must have {spatial_dims} values")
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        self.features = nn.Sequential(conv(in_channels, 32, 3), nn.ReLU(), pool(2), nn.Flatten())
        n_flat = 32
        for s in input_size:
            n_flat *= (int(s) - 2) // 2
        self.classifier = nn.Sequential(nn.Linear(n_flat, 128), nn.ReLU(), nn.Linear(128, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """Members with the same input; returns log of the mean class probability, so that the
    task's softmax gives the averaged probabilities."""

    def __init__(self, members: Sequence[nn.Module], *, multilabel: bool = False) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0).clamp(1e-7, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        p = torch.stack([torch.softmax(m(x), dim=1) for m in self.members]).mean(0)
        return torch.log(p.clamp_min(1e-12))


@register_model("classic-cnn", tasks=("classification",), dims=(2, 3),
                description="reference design's Conv32-MaxPool-Dense128 CNN (for reproduction)", params=("input_size",),
                input_size=(28, 28))
def _classic(*, spatial_dims, in_channels, num_classes, input_size):
    return ClassicCNN(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes,
                      input_size=input_size)


def _monai_resnet(depth: str):
    def factory(*, spatial_dims, in_channels, num_classes, **kw):
        from monai.networks import nets

        return getattr(nets, depth)(spatial_dims=spatial_dims, n_input_channels=in_channels,
                                    num_classes=num_classes, **kw)

    return factory


for _depth, _title in (("resnet18", "MONAI ResNet-18"), ("resnet50", "MONAI ResNet-50")):
    register_model(_depth, tasks=("classification",), dims=(2, 3), description=_title,
                   params=("widen_factor", "conv1_t_size", "conv1_t_stride", "no_max_pool", "shortcut_type",
                           "bias_downsample"))(_monai_resnet(_depth))


@register_model("densenet121", tasks=("classification",), dims=(2, 3), description="MONAI DenseNet-121",
                params=("init_features", "growth_rate", "bn_size", "dropout_prob"))
def _densenet(*, spatial_dims, in_channels, num_classes, **kw):
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, **kw)


@register_model("resnet-small", tasks=("classification",), dims=(2, 3),
                description="MONAI ResNet for small images: 3x3 stem, no max-pool, 4 stages of one basic block",
                width=32, layers=(1, 1, 1, 1))
def _resnet_small(*, spatial_dims, in_channels, num_classes, width=32, layers=(1, 1, 1, 1)):
    from monai.networks.nets import ResNet

    return ResNet(block="basic", layers=list(layers), block_inplanes=[width, 2 * width, 4 * width, 8 * width],
                  spatial_dims=spatial_dims, n_input_channels=in_channels, conv1_t_size=3, conv1_t_stride=1,
                  no_max_pool=True, num_classes=num_classes)


class _ResponseMember(nn.Module):
    """One network of a response model: an image encoder (any registered backbone, its output
    layer giving ``features`` numbers), the encoded covariates beside it, and one small head per
    treatment (a TARNet-style T-learner: shared representation, separate outcome heads)."""

    def __init__(self, *, spatial_dims: int, in_channels: int, treatments: int, encoder: str,
                 encoder_params: dict, features: int, covariates: int, hidden: int, dropout: float) -> None:
        super().__init__()
        from medsight.models.registry import create_model

        self.encoder = create_model(encoder, spatial_dims=spatial_dims, in_channels=in_channels,
                                    num_classes=features, **encoder_params)
        width = features + covariates
        self.heads = nn.ModuleList([nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
                                                  nn.Linear(hidden, 1)) for _ in range(treatments)])

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rep = torch.cat([self.encoder(x), z], dim=1)
        return torch.cat([h(rep) for h in self.heads], dim=1), rep


class ResponseNet(nn.Module):
    """The response task's network: ``members`` independent :class:`_ResponseMember` networks (a
    deep ensemble in one module) over the same image and covariates.

    ``forward(x, z)`` takes the image batch ``(N, C, *spatial)`` and the encoded covariates
    ``(N, covariates)`` (None or absent when the model has none) and returns one tensor
    ``(N, members * treatments + features + covariates)``: each member's response logit per
    treatment (member-major), then member 0's representation (encoder features and covariates),
    from which the distance to the training data is measured. One output keeps the backend seam
    (``SavedModel.run``) a single tensor for every task.
    """

    def __init__(self, *, spatial_dims: int, in_channels: int, treatments: int, members: int = 1, **kw: Any) -> None:
        super().__init__()
        self.covariates = int(kw["covariates"])
        self.members = nn.ModuleList([_ResponseMember(spatial_dims=spatial_dims, in_channels=in_channels,
                                                      treatments=treatments, **kw) for _ in range(members)])

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            z = x.new_zeros((len(x), self.covariates))
        outs = [m(x, z) for m in self.members]
        return torch.cat([*(o[0] for o in outs), outs[0][1]], dim=1)


@register_model("response-net", tasks=("response",), dims=(2, 3),
                description="response model: image encoder + covariates, one outcome head per treatment, "
                            "ensemble members in one module",
                encoder="resnet-small", encoder_params={"width": 16}, features=16, covariates=0, hidden=32,
                dropout=0.1, members=1)
def _response_net(*, spatial_dims, in_channels, num_classes, **kw):
    return ResponseNet(spatial_dims=spatial_dims, in_channels=in_channels, treatments=num_classes, **kw)


@register_model("unet", tasks=("segmentation",), dims=(2, 3), description="MONAI residual U-Net",
                params=("kernel_size", "up_kernel_size", "dropout"),
                channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
def _unet(*, spatial_dims, in_channels, num_classes, channels, strides, num_res_units, **kw):
    from monai.networks.nets import UNet

    return UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes, channels=list(channels),
                strides=list(strides), num_res_units=num_res_units, **kw)


@register_model("segresnet", tasks=("segmentation",), dims=(2, 3), description="MONAI SegResNet",
                params=("blocks_down", "blocks_up", "dropout_prob"), init_filters=16)
def _segresnet(*, spatial_dims, in_channels, num_classes, init_filters, **kw):
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                     init_filters=init_filters, **kw)


@register_model("dynunet", tasks=("segmentation",), dims=(2, 3),
                description="MONAI DynUNet (nnU-Net's network); kernels/strides from the dataset fingerprint",
                params=("dropout", "deep_supervision", "deep_supr_num"), kernel_size=None, strides=None, filters=None)
def _dynunet(*, spatial_dims, in_channels, num_classes, kernel_size=None, strides=None, filters=None, **kw):
    from monai.networks.nets import DynUNet

    if kernel_size is None or strides is None:
        kernel_size = [[3] * spatial_dims] * 4
        strides = [[1] * spatial_dims] + [[2] * spatial_dims] * 3
    return DynUNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=num_classes,
                   kernel_size=kernel_size, strides=strides, upsample_kernel_size=strides[1:], filters=filters,
                   norm_name="instance", res_block=True, **kw)
