"""Weights I/O: a network's tensors to and from safetensors, never pickles.

A tensor that a network reaches under two names (MONAI DynUNet's skip layers) is stored once
and restored under both. Loading never executes code from the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medsight.errors import ModelFileError

__all__ = ["save_weights", "load_weights"]


def save_weights(module: torch.nn.Module | dict[str, torch.Tensor], path: Path,
                 metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    state = module.state_dict() if isinstance(module, torch.nn.Module) else module
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[Any, ...], str] = {}
    for k, v in state.items():
        v = v.detach().cpu()
        ident = (v.data_ptr(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if v.numel() and ident in first:  # one tensor reached twice (MONAI DynUNet's skip layers): store it once
            aliases[k] = first[ident]
            continue
        first[ident] = k
        tensors[k] = v.contiguous()
    meta = dict(metadata or {})
    if aliases:
        meta["medsight_aliases"] = json.dumps(aliases)
    save_file(tensors, str(path), metadata=meta or None)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a damaged or foreign file raises ModelFileError."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            aliases = json.loads((f.metadata() or {}).get("medsight_aliases", "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"weights file is not valid safetensors ({exc})", path=path) from None
    for name, stored in aliases.items():
        if stored not in tensors:
            raise ModelFileError(f"weights file names {name!r} as a copy of {stored!r}, which it lacks", path=path)
        tensors[name] = tensors[stored]
    return tensors
