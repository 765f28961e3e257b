"""DynUNet reaches its blocks twice (through ``skip_layers``); its weights are stored once and
restored under both names."""

from __future__ import annotations

import torch

from medsight.models.registry import create_model
from medsight.models.weights import load_weights, save_weights


def test_shared_tensors_are_stored_once_and_restored_under_every_name(tmp_path):
    net = create_model("dynunet", spatial_dims=3, in_channels=1, num_classes=3, filters=[8, 16, 32, 64])
    state = net.state_dict()
    unique = {(v.data_ptr(), tuple(v.shape)) for v in state.values()}
    assert len(unique) < len(state)  # the premise: some tensors are reached twice
    path = tmp_path / "w.safetensors"
    save_weights(net, path)
    distinct = {(v.data_ptr(), tuple(v.shape)): v for v in state.values()}.values()
    stored = sum(v.numel() * v.element_size() for v in distinct)
    assert path.stat().st_size < stored * 1.05  # nothing stored twice
    again = create_model("dynunet", spatial_dims=3, in_channels=1, num_classes=3, filters=[8, 16, 32, 64])
    again.load_state_dict(load_weights(path), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(state.values(), again.state_dict().values()))
