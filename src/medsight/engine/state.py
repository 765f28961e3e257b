"""Saving and restoring training state without pickles.

Tensors go to safetensors (through :mod:`medsight.models.weights`); everything else
(optimizer hyper-parameters, scheduler counters, history) to JSON. Loading never executes code from the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medsight.errors import ModelFileError
from medsight.models.weights import load_weights, save_weights

__all__ = ["save_training_state", "load_training_state"]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return x.item()
    return str(x)


def save_training_state(folder: Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any | None, info: dict[str, Any]) -> None:
    """Write ``last.safetensors`` (weights), ``optim.safetensors`` and ``state.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(network, folder / "last.safetensors")
    opt = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}/{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    save_weights(tensors, folder / "optim.safetensors")
    state = {
        "optimizer": {"param_groups": _jsonable(opt["param_groups"]), "scalars": _jsonable(scalars)},
        "scheduler": _jsonable(scheduler.state_dict()) if scheduler is not None else None,
        **_jsonable(info),
    }
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(folder / "state.json")  # written last: its presence means the rest is complete


def load_training_state(folder: Path, *, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any | None) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote; returns the ``info`` mapping."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"no resumable state in {folder} ({exc})") from None
    network.load_state_dict(load_weights(folder / "last.safetensors"))
    tensors = load_weights(folder / "optim.safetensors")
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, name = key.split("/", 1)
        opt_state.setdefault(int(idx), {})[name] = v
    for idx, vals in state["optimizer"]["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(vals)
    groups = state["optimizer"]["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    return {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")}
