from pathlib import Path

import pytest

from medsight.config import (
    ClassificationRunConfig,
    SegmentationRunConfig,
    apply_overrides,
    config_from_dict,
    load_config,
)
from medsight.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

BASE = """
task: classification
name: t
data: {source: data.npz}
train: {epochs: 3, batch_size: 8}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_loads_typed_values_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 8
    assert cfg.train.optimizer == "adamw"  # default
    assert cfg.evaluation.threshold_rule == "youden"


def test_overrides_are_parsed_as_yaml_and_nested(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.epochs=7", "train.lr=0.01", "model.params.width=16",
                                              "train.early_stopping.patience=2"])
    assert cfg.train.epochs == 7 and cfg.train.lr == pytest.approx(0.01)
    assert cfg.model.params == {"width": 16}
    assert cfg.train.early_stopping.patience == 2


def test_unknown_key_names_its_dotted_path(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'train\.epocs'"):
        load_config(write(tmp_path, BASE.replace("epochs: 3", "epochs: 3, epocs: 4")))


def test_unknown_override_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'train.learning_rate'"):
        load_config(write(tmp_path, BASE), ["train.learning_rate=0.1"])


def test_wrong_type_says_what_was_given(tmp_path):
    with pytest.raises(ConfigError, match=r"'train\.epochs'.*got 'many'"):
        load_config(write(tmp_path, BASE), ["train.epochs=many"])


def test_bad_threshold_rule_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="threshold rule"):
        load_config(write(tmp_path, BASE), ["evaluation.threshold_rule=sensitivity:1.5"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "task: [unclosed"))


def test_override_without_equals_is_refused():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["train.epochs"])


def test_relative_data_path_resolves_beside_the_config(tmp_path):
    (tmp_path / "data.npz").write_bytes(b"x")
    cfg = load_config(write(tmp_path, BASE))
    assert Path(cfg.data.source) == tmp_path / "data.npz"


@pytest.mark.parametrize("data, key", [
    ({"task": "classification", "segmentation": {"patch_size": [16, 16]}}, "'segmentation'"),
    ({"task": "segmentation", "preprocessing": {"spatial_size": [28, 28]}}, "'preprocessing'"),
    ({"task": "segmentation", "evaluation": {"threshold_rule": "youden"}}, "'evaluation'"),
    ({"task": "segmentation", "train": {"ensemble": 3}}, "'train.ensemble'"),
    ({"task": "segmentation", "data": {"source": "d", "positive_label": "tumour"}}, "'data.positive_label'"),
    ({"task": "classification", "data": {"source": "d", "cache": "disk"}}, "'data.cache'"),
])
def test_a_key_the_task_does_not_read_is_refused_naming_the_task(data, key):
    data = {"data": {"source": "d"}, **data}
    with pytest.raises(ConfigError, match=f"{key} is not read by task '{data['task']}'"):
        config_from_dict(data)


def test_a_split_file_is_refused_by_classification_which_does_not_read_it():
    with pytest.raises(ConfigError, match="'data.split_file': is read by segmentation only.*got 's.json'"):
        config_from_dict({"task": "classification", "data": {"source": "d", "split_file": "s.json"}})
    assert config_from_dict({"task": "segmentation", "data": {"source": "d", "split_file": "s.json"}})


def test_a_ct_window_intensity_without_a_window_is_a_config_error():
    with pytest.raises(ConfigError, match="'preprocessing': intensity ct_window needs preprocessing.ct_window"):
        config_from_dict({"data": {"source": "d"}, "preprocessing": {"intensity": "ct_window"}})


@pytest.mark.parametrize("override", ["train.ema=0.99", "evaluation.ci=0.9"])
def test_knobs_that_nothing_reads_are_refused(tmp_path, override):
    with pytest.raises(ConfigError, match=f"unknown key '{override.split('=')[0]}'"):
        load_config(write(tmp_path, BASE), [override])


def test_a_task_without_a_config_is_refused_with_the_known_tasks():
    with pytest.raises(ConfigError, match=r"'task' must be one of 'classification', 'segmentation'.*; got 'tracking'"):
        config_from_dict({"task": "tracking", "data": {"source": "d"}})


def test_each_task_gets_its_own_config_and_defaults():
    assert isinstance(config_from_dict({"data": {"source": "d"}}), ClassificationRunConfig)  # task defaults
    seg = config_from_dict({"task": "segmentation", "data": {"source": "d"}})
    assert isinstance(seg, SegmentationRunConfig) and seg.train.monitor == "val_dice"
    with pytest.raises(ConfigError, match="'train.monitor'"):
        config_from_dict({"task": "segmentation", "data": {"source": "d"}, "train": {"monitor": "val_auc"}})
    with pytest.raises(ConfigError, match="'train.monitor'.*got 'val_acc'"):
        config_from_dict({"data": {"source": "d"}, "train": {"monitor": "val_acc"}})


@pytest.mark.parametrize("path", [p for p in sorted((REPO / "configs").glob("*.yaml")) if p.name != "service.yaml"],
                         ids=lambda p: p.name)
def test_the_shipped_configs_load_as_their_task(path):
    import yaml

    cfg = load_config(path)
    assert cfg.task == yaml.safe_load(path.read_text())["task"]
    assert cfg.train_command("runs/x") == f"medsight train {path} --out runs/x"


def test_the_train_command_names_the_file_and_overrides_and_nothing_else(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.epochs=7", "name=a b"])
    assert cfg.train_command("runs/t") == f"medsight train {tmp_path / 'c.yaml'} --set train.epochs=7 " \
                                          "--set 'name=a b' --out runs/t"
    assert config_from_dict({"data": {"source": "d"}}).train_command("runs/t") is None
