"""ONNX Runtime as a backend (:mod:`medsight.models.backend`): the exported graph
(:mod:`medsight.models.export`) run on the CPU.

Which outputs the graph has decides what the backend gives: ``logits`` always, and
``features`` (the input of the last linear layer) for a classifier, so the training-fingerprint
distance, "refer" and drift monitoring work as on torch. Threads: ``intra_op_num_threads`` is
torch's thread count unless given (the service sets ``workers.torch_threads``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.errors import ConfigError, ModelFileError

__all__ = ["OnnxRuntimeBackend"]


class OnnxRuntimeBackend:
    """An ONNX file run by ONNX Runtime's CPU execution provider.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: ``torch.get_num_threads()``).

    Raises:
        ConfigError: onnxruntime is not installed.
        ModelFileError: the file is not an ONNX model ONNX Runtime can load.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - a dependency; the message says how to get it
            raise ConfigError("the onnxruntime backend needs the onnxruntime package: pip install onnxruntime") \
                from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for a bad file
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise ModelFileError(f"not an ONNX model ONNX Runtime can load: {first}", path=path) from None
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input = self.session.get_inputs()[0].name

    def _run(self, x: torch.Tensor, names: list[str]) -> list[Any]:
        if x.dtype != torch.float32:  # e.g. under a bf16 autocast region: ONNX takes what it was exported with
            x = x.float()
        return self.session.run(names, {self.input: np.ascontiguousarray(x.detach().cpu().numpy())})

    def run(self, x: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        if inputs:
            raise ConfigError("the onnxruntime backend runs image-only models")
        return torch.from_numpy(self._run(x, ["logits"])[0])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``features`` output: the input of the network's last linear layer ``(N, D)``.

        Raises:
            ValueError: the graph has no ``features`` output (not a classifier's export).
        """
        if "features" not in self.outputs:
            raise ValueError(f"{self.path.name} has no 'features' output")
        return torch.from_numpy(self._run(x, ["features"])[0])

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({self.path.name})"
