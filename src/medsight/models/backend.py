"""The seam between a saved model and whatever computes its outputs.

Every inference call site goes through :meth:`medsight.models.saved.SavedModel.run`, which
hands the batch to the model's :class:`Backend`. :class:`TorchBackend` runs a torch module in
eval mode without autograd; a second backend (ONNX Runtime, TensorRT) is a new class with a
``run`` method, passed as ``SavedModel(backend=...)``: no task changes.

What a backend must do: take a float32 batch ``(N, C, *spatial)`` on the CPU, as the model's
preprocessor makes it (and, for a model with non-image inputs, those inputs as further float32
tensors, e.g. a response model's encoded covariates ``(N, F)``), and return the network's raw
outputs ``(N, K, *spatial_or_nothing)`` (logits; the task applies softmax or sigmoid), as a
torch tensor. It may be called inside
``torch.autocast`` (bf16 sliding windows); a backend that does not use torch ignores that.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Backend", "TorchBackend"]


@runtime_checkable
class Backend(Protocol):
    """Computes a model's raw outputs for one input batch."""

    def run(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        """Outputs of the network for ``x`` (``(N, C, *spatial)`` float32) and the model's
        non-image ``inputs`` (none for an image-only model)."""
        ...


class TorchBackend:
    """A torch module, run in eval mode under ``torch.inference_mode``.

    Args:
        network: the module; it is put in eval mode before each call if something (a trainer)
            left it in training mode.
    """

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network

    def run(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        if self.network.training:
            self.network.eval()
        with torch.inference_mode():
            return self.network(x, *inputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the network's last linear layer for ``x`` ``(N, D)``: the penultimate
        features a classifier's decision is made from (for an ensemble, its last member's), from
        which the distance to the training data is measured.

        Raises:
            ValueError: the network has no linear layer.
        """
        last = next((m for m in reversed(list(self.network.modules())) if isinstance(m, torch.nn.Linear)), None)
        if last is None:
            raise ValueError(f"{type(self.network).__name__} has no linear layer to take features from")
        got: list[torch.Tensor] = []
        handle = last.register_forward_pre_hook(lambda _m, args: got.append(args[0].flatten(1)))
        try:
            self.run(x)
        finally:
            handle.remove()
        return got[-1]

    def __repr__(self) -> str:
        return f"TorchBackend({type(self.network).__name__})"
