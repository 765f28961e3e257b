import pytest
import torch

from medsight.errors import ConfigError
from medsight.models import create_model, get_spec, list_models


def test_classic_cnn_is_the_reference_architecture():
    net = create_model("classic-cnn", spatial_dims=2, in_channels=1, num_classes=2, input_size=(28, 28))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    dense = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 1 and convs[0].out_channels == 32 and convs[0].kernel_size == (3, 3)
    assert convs[0].padding == (0, 0)  # Keras 'valid'
    assert len(pools) == 1 and pools[0].kernel_size == 2
    assert [d.out_features for d in dense] == [128, 2]
    # Keras' model.summary() for this network on 28x28x1: 320 + 692,352 + 258 parameters
    assert sum(p.numel() for p in net.parameters()) == 320 + 692_352 + 258


def test_unknown_model_and_wrong_dims_are_refused():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'"):
        create_model("resnet9000")
    with pytest.raises(ConfigError, match="bad parameters"):
        create_model("resnet-small", spatial_dims=2, nonsense=1)


def test_a_parameter_value_the_architecture_refuses_is_a_config_error_naming_the_model():
    with pytest.raises(ConfigError, match=r"model 'unet' cannot be built with parameters \{'channels': \[8\]"):
        create_model("unet", spatial_dims=3, channels=[8], strides=[])


def test_registry_lists_by_pattern_and_task():
    assert "resnet18" in list_models("resnet*")
    assert "unet" not in list_models(task="classification")
    assert set(list_models(task="segmentation")) >= {"unet", "dynunet", "segresnet"}


@pytest.mark.parametrize("name", list_models())
def test_every_architecture_declares_its_parameters_and_refuses_pretrained(name):
    spec = get_spec(name)
    assert set(spec.defaults) <= set(spec.params)
    assert "pretrained" not in spec.params
    with pytest.raises(ConfigError, match="pretrained"):
        create_model(name, spatial_dims=spec.dims[0], pretrained=True)
