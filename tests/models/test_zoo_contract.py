"""Contract over every shipped model, parametrised over the zoo (:func:`medsight.models.list_zoo`):
it loads, its manifest has the keys every saved model needs, its weights are the bytes its
manifest names, it predicts on a synthetic input of its modality and dimensions, it refuses
another modality, and its card says what it is and how to retrain it.

A model added to ``src/medsight/zoo`` is checked here without an edit; what is specific to one
task's models (thresholds, metrics on real data) stays in tests/tasks/<task>/test_*zoo*.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from medsight.errors import ModalityError
from medsight.io.image import Image
from medsight.models import list_zoo, load_model
from medsight.tasks.base import get_task, list_tasks

REPO = Path(__file__).resolve().parents[2]
ZOO = list_zoo()

#: what every saved model's manifest holds (docs/design.md): identity, what it takes, what it gives,
#: its weights' checksum, and what an auditor asks (training data, metrics, versions).
REQUIRED = {"format", "format_version", "name", "version", "task", "description", "labels", "modalities",
            "architecture", "preprocessing", "weights_sha256", "training", "metrics", "versions"}
REQUIRED_ARCHITECTURE = {"name", "spatial_dims", "in_channels", "num_classes"}
#: spatial shape of the synthetic input by dimensions: not a multiple of anything, smaller than any patch
SHAPE = {2: (36, 31), 3: (19, 26, 23)}


@pytest.fixture(scope="module", params=ZOO, ids=lambda z: z["name"])
def shipped(request):
    return request.param, load_model(request.param["name"])


def _synthetic(model, modality: str) -> Image:
    rng = np.random.default_rng(0)
    dims = model.spatial_dims
    mean, sd = (-700.0, 150.0) if modality == "CT" else (100.0, 20.0)  # CT in HU: air-like, as a CT model checks
    arr = rng.normal(mean, sd, (1, *SHAPE[dims])).astype(np.float32)
    return Image(arr, spacing=(1.0,) * dims, modality=modality, source=f"synthetic-{dims}d")


def test_the_zoo_lists_every_shipped_folder():
    folders = sorted(p.name for p in (REPO / "src" / "medsight" / "zoo").iterdir() if (p / "manifest.json").is_file())
    assert folders and sorted(Path(z["path"]).name for z in ZOO) == folders
    assert len({z["name"] for z in ZOO}) == len(ZOO)


def test_manifest_has_the_required_keys_and_names_its_folder(shipped):
    entry, m = shipped
    manifest = json.loads((Path(entry["path"]) / "manifest.json").read_text())
    assert REQUIRED <= set(manifest), f"{entry['name']} lacks {sorted(REQUIRED - set(manifest))}"
    arch = manifest["architecture"]
    assert REQUIRED_ARCHITECTURE <= set(arch), f"{entry['name']} architecture lacks {REQUIRED_ARCHITECTURE - set(arch)}"
    assert m.name == entry["name"] == Path(entry["path"]).name
    assert m.task == entry["task"] and m.task in list_tasks()
    assert m.labels == entry["labels"] and len(m.labels) == int(arch["num_classes"])
    assert manifest["modalities"] and all(isinstance(x, str) and x for x in manifest["modalities"])
    assert manifest["metrics"].get("test"), f"{entry['name']} records no test metrics"


def test_weights_are_the_bytes_the_manifest_names_and_small_enough_to_ship(shipped):
    entry, m = shipped
    weights = Path(entry["path"]) / "weights.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == m.manifest["weights_sha256"]
    assert weights.stat().st_size < 20 * 2**20


def test_predicts_on_a_synthetic_input_of_its_modality_and_dims(shipped):
    _, m = shipped
    task = get_task(m.task)
    image = _synthetic(m, m.manifest["modalities"][0])
    (r,) = task.infer(m, [image], inputs=["synthetic"])
    assert isinstance(r, task.result_type) and r.ok and r.input == "synthetic"
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["input"] == "synthetic"
    assert r.provenance.model == m.name and r.provenance.weights_sha256 == m.manifest["weights_sha256"]
    assert r.findings(), f"{m.name} found nothing to report on its input"
    (again,) = task.infer(m, [image], inputs=["synthetic"])  # inference is deterministic
    assert [f.to_dict() for f in again.findings()] == [f.to_dict() for f in r.findings()]


def test_refuses_an_image_of_another_modality(shipped):
    _, m = shipped
    other = next(x for x in ("MR", "CT", "US", "CR", "PT") if x not in m.manifest["modalities"])
    with pytest.raises(ModalityError, match=other):
        get_task(m.task).infer(m, [_synthetic(m, other)])


def test_shipped_card_is_regenerated_with_every_section_and_measured_failure_modes(shipped):
    """The card on disk is what its manifest renders now (scripts/model_cards.py wrote it), with
    the intended and out-of-scope use its config states and failure modes measured on real data."""
    entry, m = shipped
    shipped_card = (Path(entry["path"]) / "MODEL_CARD.md").read_text()
    assert shipped_card == get_task(m.task).model_card(m.manifest), (
        f"{m.name}'s card is stale: run `.venv/bin/python scripts/model_cards.py`")
    config = yaml.safe_load((REPO / re.search(r"configs/\S+\.yaml", m.manifest["reproduce"]).group(0)).read_text())
    assert m.manifest["intended_use"] == config["intended_use"] and m.manifest["out_of_scope"] == config["out_of_scope"]
    for heading in ("Intended use", "Out-of-scope use", "Training fingerprint", "Calibration", "Refer rule",
                    "Known failure modes (measured here)"):
        assert f"\n## {heading}\n- " in shipped_card, heading
    modes = m.spec.failure_modes
    assert modes and any(f.data == "real" for f in modes) and all(f.measured and f.command for f in modes)
    assert all(f.result in shipped_card for f in modes)


def test_card_names_the_model_its_labels_and_how_to_retrain_it(shipped):
    entry, m = shipped
    shipped_card = (Path(entry["path"]) / "MODEL_CARD.md").read_text()
    assert m.card == shipped_card and shipped_card.startswith(f"# {m.name} (v{m.version})\n")
    reproduce = re.search(r"medsight train (configs/\S+\.yaml)", shipped_card)
    assert "## Reproduce" in shipped_card and reproduce, f"{m.name}'s card does not say how to retrain it"
    assert (REPO / reproduce.group(1)).is_file(), f"{m.name}'s card names a config that is not in the repo"
    command = m.manifest.get("reproduce") or reproduce.group(0)
    card = get_task(m.task).model_card(m.manifest, reproduce=command)  # the card renders from the manifest now
    assert card.startswith(f"# {m.name} (v{m.version})")
    foreground = [lab for lab in m.labels if lab != "background"]
    assert all(label in card for label in foreground)
    assert command in card
