"""Contract over every registered architecture: for each (task, dims) it declares, it builds with
its defaults, has parameters, and maps the smallest sensible input to the output its task expects.

Parametrised over :func:`medsight.models.list_models` and each spec's ``tasks`` and ``dims``, so a
new architecture is covered when it registers. One that cannot take the default input size says
so in SMALLEST; one for a new task fails until OUTPUT_SHAPE says what that task's networks give.
"""

from __future__ import annotations

import pytest
import torch

from medsight.models import create_model, get_spec, list_models

#: the default side of the input (voxels per axis): divisible by the 3 halvings of the
#: segmentation networks' defaults, and as small as the classifiers take.
DEFAULT_SIDE = 16
#: architectures that need a larger input, with the reason.
SMALLEST = {"densenet121": 32}  # four stride-2 stages after a stride-2 stem: 32 is its smallest input
BATCH, IN_CHANNELS, CLASSES = 2, 2, 3  # channels ≠ classes: swapped arguments would show


def _params(name: str, size: tuple[int, ...]) -> dict:
    """Parameters an architecture needs to take an input of ``size`` (classic-cnn's dense layer
    is sized by its input)."""
    return {"input_size": list(size)} if "input_size" in get_spec(name).params else {}


#: task → the output shape its networks give for input (B, C, *spatial).
OUTPUT_SHAPE = {
    "classification": lambda spatial: (BATCH, CLASSES),
    "segmentation": lambda spatial: (BATCH, CLASSES, *spatial),
    # one member by default: a logit per treatment (CLASSES), then the representation (16 features, no covariates)
    "response": lambda spatial: (BATCH, CLASSES + 16),
}

CASES = [(name, task, dims) for name in list_models() for task in get_spec(name).tasks for dims in get_spec(name).dims]


def test_every_architecture_declares_tasks_and_dims():
    assert CASES
    for name in list_models():
        spec = get_spec(name)
        assert spec.tasks and set(spec.dims) <= {2, 3} and spec.dims, (name, spec.tasks, spec.dims)
        assert spec.description, f"{name} has no description (medsight models lists it)"


@pytest.mark.parametrize(("name", "task", "dims"), CASES, ids=lambda v: str(v))
def test_architecture_builds_and_gives_the_output_its_task_expects(name, task, dims):
    if task not in OUTPUT_SHAPE:
        pytest.fail(f"architecture {name!r} declares task {task!r}: say in OUTPUT_SHAPE of "
                    "tests/models/test_architecture_contract.py what its networks give")
    spatial = (SMALLEST.get(name, DEFAULT_SIDE),) * dims
    torch.manual_seed(0)
    net = create_model(name, spatial_dims=dims, in_channels=IN_CHANNELS, num_classes=CLASSES,
                       **_params(name, spatial)).eval()
    n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert n_params > 0
    x = torch.randn(BATCH, IN_CHANNELS, *spatial)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor), f"{name} returns {type(out).__name__} in eval mode, not a tensor"
    assert tuple(out.shape) == OUTPUT_SHAPE[task](spatial)
    assert torch.isfinite(out).all()
    # the batch items are independent: the second input alone gives the second output
    with torch.no_grad():
        alone = net(x[1:])
    assert torch.allclose(alone[0], out[1], atol=1e-4, rtol=1e-4)
