from pathlib import Path

import pytest

from medsight.config import apply_overrides, load_config
from medsight.errors import ConfigError

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
