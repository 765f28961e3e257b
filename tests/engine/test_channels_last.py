"""``train.channels_last``: a conv network trains in channels-last order, to the same weights
(up to float rounding) as in the default order, and its saved weights are ordinary ones."""

from __future__ import annotations

import torch

from medsight.config import TrainConfig
from medsight.engine.trainer import Trainer, TrainingHooks
from medsight.models.weights import load_weights, save_weights


class _Hooks(TrainingHooks):
    def __init__(self) -> None:
        self.orders: list[bool] = []

    def training_step(self, network, batch):
        w = network[2].weight  # (4, 4, 3, 3, 3): the two orders differ
        self.orders.append(w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous())
        return torch.nn.functional.mse_loss(network(batch[0]), batch[1])

    def validate(self, network):
        return {"val_score": 0.0}


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv3d(4, 1, 1))


def _train(channels_last: bool) -> tuple[torch.nn.Module, _Hooks]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 6, 6, 6, generator=g)
    data = torch.utils.data.TensorDataset(x, x.roll(1, dims=2))
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.01, schedule="none", monitor="val_score", threads=1,
                      channels_last=channels_last, checkpoint="last")
    net, hooks = _net(), _Hooks()
    Trainer(net, hooks, cfg).fit(data)
    return net, hooks


def test_channels_last_trains_the_same_weights_in_the_other_memory_order(tmp_path):
    plain, plain_hooks = _train(False)
    last, last_hooks = _train(True)
    assert plain_hooks.orders and not any(plain_hooks.orders)
    assert last_hooks.orders and all(last_hooks.orders)
    moved = max(float((a - b).abs().max()) for a, b in zip(plain.state_dict().values(), _net().state_dict().values()))
    assert moved > 1e-3  # training changed the weights, so the comparison below means something
    for (k, a), b in zip(plain.state_dict().items(), last.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    save_weights(last, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    assert all(v.is_contiguous() for v in loaded.values())
    fresh = _net()
    fresh.load_state_dict(loaded)
    x = torch.randn(2, 1, 6, 6, 6)
    torch.testing.assert_close(fresh(x), last(x))
