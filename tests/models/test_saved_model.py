import json
import pickle

import pytest
import torch

from medsight.errors import ModelFileError, ModelNotFoundError
from medsight.models.saved import SavedModel, build_network, load_model

ARCH = {"name": "resnet-small", "params": {"width": 8}, "spatial_dims": 2, "in_channels": 1, "num_classes": 2}


def make(tmp_path):
    torch.manual_seed(0)
    net = build_network(ARCH).eval()
    manifest = {"name": "m", "version": "1.0.0", "task": "classification", "architecture": ARCH,
                "preprocessing": {"spatial_size": [28, 28]}, "labels": ["a", "b"], "positive_index": 1,
                "threshold": 0.4}
    folder = SavedModel(net, manifest, card="# card\n").save(tmp_path / "model")
    return net, folder


def test_round_trip_gives_identical_outputs(tmp_path):
    net, folder = make(tmp_path)
    loaded = load_model(folder)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x), loaded.network(x))
    assert loaded.manifest["threshold"] == 0.4 and loaded.labels == ["a", "b"]
    assert loaded.manifest["format"] == "medsight-model" and len(loaded.manifest["weights_sha256"]) == 64
    assert (folder / "MODEL_CARD.md").read_text() == "# card\n"
    assert load_model(folder / "manifest.json").path == folder


def test_a_saved_model_records_the_cpu_it_was_made_on(tmp_path):
    _, folder = make(tmp_path)
    cpu = load_model(folder).manifest["versions"]["cpu"]
    assert cpu.endswith(f" ({torch.backends.cpu.get_cpu_capability()})") and len(cpu) > 4


def test_damaged_weights_are_detected_by_checksum(tmp_path):
    _, folder = make(tmp_path)
    w = folder / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(folder)


def test_truncated_weights_with_a_matching_checksum_still_fail_cleanly(tmp_path):
    import hashlib

    _, folder = make(tmp_path)
    w = folder / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    m = json.loads((folder / "manifest.json").read_text())
    m["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="safetensors"):
        load_model(folder)


def _edit_manifest(folder, **changes):
    m = json.loads((folder / "manifest.json").read_text())
    for k, v in changes.items():
        if v is None:
            del m[k]
        else:
            m[k] = v
    (folder / "manifest.json").write_text(json.dumps(m))


def test_a_manifest_without_weights_checksum_is_refused(tmp_path):
    _, folder = make(tmp_path)
    _edit_manifest(folder, weights_sha256=None)
    with pytest.raises(ModelFileError, match="weights_sha256"):
        load_model(folder)


@pytest.mark.parametrize("params", [{"width": 8, "pretrained": True}, {"width": 8, "pretrained": "/etc/passwd"},
                                    {"width": 8, "weights_path": "weights.pt"}, {"width": 8, "layers": "../x.pt"}])
def test_architecture_params_outside_the_allow_list_are_refused(tmp_path, params):
    _, folder = make(tmp_path)
    _edit_manifest(folder, architecture={**ARCH, "params": params})
    with pytest.raises(ModelFileError, match="bad parameters"):
        load_model(folder)


def test_pretrained_never_reaches_the_architecture(monkeypatch):
    from medsight.errors import ConfigError
    from medsight.models import create_model

    calls = []
    monkeypatch.setattr("monai.networks.nets.DenseNet121", lambda **kw: calls.append(kw))
    with pytest.raises(ConfigError, match="pretrained"):
        create_model("densenet121", spatial_dims=2, pretrained=True)
    assert calls == []


def test_a_symlink_in_the_model_folder_is_refused(tmp_path):
    _, folder = make(tmp_path)
    w = folder / "weights.safetensors"
    real = tmp_path / "elsewhere.safetensors"
    w.rename(real)
    w.symlink_to(real)
    with pytest.raises(ModelFileError, match="symbolic link"):
        load_model(folder)


def test_a_pickle_is_refused_and_named(tmp_path):
    p = tmp_path / "model.pkl"
    p.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(p)
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pt)
    with pytest.raises(ModelFileError, match="torch.save|pickled"):
        load_model(pt)


def test_foreign_manifest_and_missing_files(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    with pytest.raises(ModelFileError, match="no manifest.json"):
        load_model(d)
    (d / "manifest.json").write_text('{"format": "keras"}')
    with pytest.raises(ModelFileError, match="not a MedSight manifest"):
        load_model(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(d)


def test_weights_for_another_architecture_are_refused(tmp_path):
    _, folder = make(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    m["architecture"]["params"] = {"width": 16}
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelFileError, match="do not fit the architecture"):
        load_model(folder)


def test_unknown_name():
    with pytest.raises(ModelNotFoundError, match="no model named"):
        load_model("no-such-model")


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    from medsight.tasks.classification import round_to_float16

    net, folder32 = make(tmp_path)
    round_to_float16(net)
    m = load_model(folder32)
    m.manifest["weights_dtype"] = "float16"
    m.network.load_state_dict(net.state_dict())
    folder16 = m.save(tmp_path / "half")
    size32 = (folder32 / "weights.safetensors").stat().st_size
    size16 = (folder16 / "weights.safetensors").stat().st_size
    assert size16 < 0.6 * size32
    loaded = load_model(folder16)
    assert all(p.dtype == torch.float32 for p in loaded.network.parameters())
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x), loaded.network(x))  # rounding happened before, so nothing changes on load
