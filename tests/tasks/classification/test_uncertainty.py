"""Predictive uncertainty and the refer rules beside "unlike training data": entropy for every
classifier, mutual information where several predictions are averaged, "uncertain" when a
model stores the rule, and "modality not in training data" (synthetic tiny networks, and the
shipped models on a few real test images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.io.image import Image
from medsight.models import load_model
from medsight.models.saved import SavedModel
from medsight.tasks.base import get_task


def _tiny(members: int = 1, tta: bool = False, **extra) -> SavedModel:
    from medsight.models.architectures import Ensemble
    from medsight.models.registry import create_model

    nets = []
    for i in range(members):
        torch.manual_seed(i)
        nets.append(create_model("resnet-small", spatial_dims=2, in_channels=1, num_classes=2, width=4))
    net = nets[0] if members == 1 else Ensemble(nets)
    manifest = {"name": "tiny", "version": "1", "task": "classification", "tta": tta,
                "architecture": {"name": "resnet-small", "params": {"width": 4}, "spatial_dims": 2, "in_channels": 1,
                                 "num_classes": 2, "ensemble": members},
                "preprocessing": {"spatial_size": [28, 28], "channels": 1, "intensity": "minmax"},
                "labels": ["a", "b"], "positive_index": 1, "threshold": 0.5, "modalities": ["CR", "DX"], **extra}
    return SavedModel(network=net.eval(), manifest=manifest)


def _images(rng, n=6, modality=None):
    out = []
    for _ in range(n):
        out.append(Image(array=rng.uniform(0, 1, (1, 28, 28)).astype(np.float32), spacing=(1.0, 1.0),
                         modality=modality or "OT"))
    return out


def test_entropy_is_that_of_the_probabilities_and_bounded(rng):
    m = _tiny()
    rs = get_task("classification").infer(m, _images(rng))
    for r in rs:
        p = np.array(list(r.probabilities.values()))
        assert r.uncertainty["entropy"] == pytest.approx(-(p * np.log(p)).sum(), abs=1e-5)
        assert 0 <= r.uncertainty["entropy_normalised"] <= 1 and r.uncertainty["method"] == "softmax"
        assert "mutual_information" not in r.uncertainty and "uncertainty" in r.to_dict()


@pytest.mark.parametrize("members,tta,method", [(3, False, "ensemble of 3"), (1, True, "tta"),
                                                (2, True, "ensemble of 2+tta")])
def test_several_predictions_give_their_disagreement_as_mutual_information(rng, members, tta, method):
    rs = get_task("classification").infer(_tiny(members, tta), _images(rng))
    for r in rs:
        u = r.uncertainty
        assert u["method"] == method and 0 <= u["mutual_information"] <= u["entropy"] + 1e-6
    assert max(r.uncertainty["mutual_information"] for r in rs) > 0  # random members do disagree


def test_the_uncertain_rule_refers_above_its_entropy_and_says_so(rng):
    task = get_task("classification")
    ims = _images(rng, 10)
    plain = task.infer(_tiny(), ims)
    hs = sorted(r.uncertainty["entropy"] for r in plain)
    limit = (hs[4] + hs[5]) / 2
    ruled = task.infer(_tiny(uncertainty={"refer_above": limit, "quantile": 0.95}), ims)
    for a, b in zip(plain, ruled):
        assert a.probabilities == b.probabilities and a.refer is None
        high = a.uncertainty["entropy"] > limit
        assert b.refer is high and (b.label == "refer") is high
        assert b.reasons[0].startswith("uncertain: predictive entropy" if high else "predictive entropy")


def test_an_accepted_modality_the_model_was_not_trained_on_is_referred(rng):
    from medsight.errors import ModalityError

    task = get_task("classification")
    m = _tiny()
    with pytest.raises(ModalityError):
        task.infer(m, _images(rng, 1, modality="US"))
    (us,) = task.infer(m.accepting(["US"]), _images(rng, 1, modality="US"))
    assert us.refer is True and us.label == "refer"
    assert us.reasons == ["modality not in training data: US (trained on CR, DX)"]
    (cr,) = task.infer(m.accepting(["US"]), _images(rng, 1, modality="CR"))
    (png,) = task.infer(m, _images(rng, 1))
    assert cr.refer is None and png.refer is None  # trained modality, and no modality (a PNG): no rule applies


@pytest.mark.realdata
def test_the_shipped_classifiers_report_uncertainty_with_unchanged_probabilities(shared_data):
    """The ensemble (breast-ultrasound, 5 members) gives mutual information; the single network
    (pneumonia-xray) entropy only. Decisions and probabilities are those of ``probabilities``."""
    task = get_task("classification")
    for name, data, method in (("pneumonia-xray", "pneumoniamnist", "softmax"),
                               ("breast-ultrasound", "breastmnist", "ensemble of 5")):
        m = load_model(name)
        with np.load(shared_data(f"{data}/{data}.npz")) as z:
            ims = [Image(array=a[None].astype(np.float32), spacing=(1.0, 1.0)) for a in z["test_images"][:20]]
        rs = task.infer(m, ims)
        p = task.probabilities(m, ims)
        assert np.abs(np.array([list(r.probabilities.values()) for r in rs]) - p).max() < 1e-6
        assert all(r.uncertainty["method"] == method for r in rs)
        if method != "softmax":
            assert max(r.uncertainty["mutual_information"] for r in rs) > 0.01


def test_training_with_uncertain_quantile_stores_the_rule_from_validation(tiny_npz, tmp_path):
    from medsight.config import config_from_dict

    c = config_from_dict({"task": "classification", "name": "tiny", "data": {"source": str(tiny_npz)},
                          "preprocessing": {"spatial_size": [28, 28]}, "augmentation": "none",
                          "model": {"name": "resnet-small", "params": {"width": 4}},
                          "train": {"epochs": 1, "batch_size": 16, "threads": 1},
                          "evaluation": {"bootstrap": 100, "uncertain_quantile": 0.9}})
    model = get_task("classification").train(c, run_dir=tmp_path / "run")
    rule = model.manifest["uncertainty"]
    assert rule["quantile"] == 0.9 and rule["n"] == 20 and rule["refer_above"] > 0
    assert rule["refer_rate_validation"] <= 0.15
