"""The shipped classification models: an operating point each, and as good on the official test
splits as their cards say (real data: the PneumoniaMNIST and BreastMNIST copies in ../shared/data).
What every shipped model must be (loadable, checksummed, documented) is tests/models/test_zoo_contract.py."""

import numpy as np
import pytest

import medsight
from medsight.models import list_zoo, load_model
from medsight.tasks.base import get_task

#: what each shipped classification model must reach on its official test split (real data)
SHIPPED = {
    # name: (data file, minimum test AUC, minimum test accuracy, min sensitivity, min specificity)
    "pneumonia-xray": ("pneumoniamnist/pneumoniamnist.npz", 0.98, 0.93, 0.90, 0.80),
    "breast-ultrasound": ("breastmnist/breastmnist.npz", 0.92, 0.87, None, None),
}
CLASSIFIERS = [z["name"] for z in list_zoo() if z["task"] == "classification"]


def test_every_shipped_classifier_has_targets_on_real_data():
    assert sorted(SHIPPED) == sorted(CLASSIFIERS), "say in SHIPPED what a new shipped classifier must reach"


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_shipped_classifier_has_an_operating_point_chosen_on_validation(name):
    m = load_model(name).manifest
    if m.get("positive_index") is not None:  # binary: one threshold on the positive class
        assert m["threshold_rule"] and 0 < m["threshold"] < 1
    elif m.get("multilabel"):
        assert m["threshold_rule"] and all(0 < t < 1 for t in m["thresholds"])


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_meets_its_targets_on_the_official_test_split(name, shared_data):
    data, auc, acc, sens, spec = SHIPPED[name]
    m = load_model(name)
    ev = get_task("classification").evaluate(m, str(shared_data(data)), split="test", n_boot=500)
    assert ev["auc"] >= auc and ev["accuracy"] >= acc, (ev["auc"], ev["accuracy"])
    if sens is not None:
        assert ev["sensitivity"] >= sens and ev["specificity"] >= spec, (ev["sensitivity"], ev["specificity"])
    # the card reports what the model really does: to within about two of the test set's
    # positive-negative pairs swapping order (an AUC step is 1/(n_pos n_neg), 2e-4 for
    # BreastMNIST), since CPUs whose kernels differ (AVX-512 or not) round float16 ensembles
    # differently: measured 0.9329 here against the 0.9330 recorded, on the unchanged model
    assert ev["auc"] == pytest.approx(m.manifest["metrics"]["test"]["auc"], abs=5e-4)


@pytest.mark.realdata
def test_predict_by_name_on_a_png_right_after_install(tmp_path, shared_data):
    from support.bad_inputs import write_png

    with np.load(shared_data("pneumoniamnist/pneumoniamnist.npz")) as z:
        img = z["test_images"][1]
    png = write_png(tmp_path / "chest.png", img)
    [r] = medsight.load("pneumonia-xray").predict([png])
    assert r.label in ("normal", "pneumonia") and abs(sum(r.probabilities.values()) - 1) < 1e-5
    assert r.provenance.model == "pneumonia-xray" and len(r.provenance.input_sha256) == 64


@pytest.mark.realdata
def test_pneumonia_xray_is_calibrated_on_validation_and_its_test_ece_is_at_most_0_03(shared_data):
    m = load_model("pneumonia-xray")
    assert m.manifest["temperature"] != 1.0 and m.manifest["calibration"]["fitted_on"].startswith("val split")
    ev = get_task("classification").evaluate(m, str(shared_data("pneumoniamnist/pneumoniamnist.npz")), split="test",
                                             n_boot=200)
    assert ev["ece"] <= 0.03 < ev["ece_uncalibrated"], (ev["ece"], ev["ece_uncalibrated"])  # measured 0.0254, 0.051


@pytest.mark.realdata
def test_pneumonia_xray_refers_ultrasound_and_mri_but_not_its_own_xrays(shared_data):
    """BreastMNIST ultrasound and hippocampus MRI slices given to the chest X-ray model (as the
    8-bit images a PNG holds) are referred; PneumoniaMNIST test X-rays are not (measured in
    benchmarks/bench_ood.py)."""
    import nibabel as nib

    from medsight.io.image import Image

    def images(arrays):
        return [Image(a[None].astype(np.float32), spacing=(1.0, 1.0)) for a in arrays]

    task, m = get_task("classification"), load_model("pneumonia-xray")
    with np.load(shared_data("pneumoniamnist/pneumoniamnist.npz")) as z:
        own = images(z["test_images"])
    with np.load(shared_data("breastmnist/breastmnist.npz")) as z:
        ultrasound = images(z["test_images"])
    mri = []
    for v in sorted(shared_data("msd_hippocampus/imagesTr").glob("*.nii.gz"))[:60]:
        vol = np.asarray(nib.load(v).dataobj, dtype=np.float64)
        plane = vol[..., vol.shape[2] // 2]
        lo, hi = np.percentile(plane, [0.5, 99.5])
        mri.append((np.clip((plane - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8))
    rate = {name: np.mean([r.refer for r in task.infer(m, ims)])
            for name, ims in (("own", own), ("ultrasound", ultrasound), ("mri", images(mri)))}
    assert rate["own"] <= 0.10 and rate["ultrasound"] >= 0.80 and rate["mri"] >= 0.80, rate


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_classifier_is_calibrated_and_better_calibrated_for_it(name, shared_data):
    """Temperature scaling fitted on validation lowers the test ECE (pneumonia-xray 0.051 -> 0.025,
    breast-ultrasound 0.103 -> 0.052, measured) and leaves the AUC as it was."""
    m = load_model(name)
    assert m.manifest["temperature"] != 1.0 and m.manifest["ood"]["threshold"] > 0
    ev = get_task("classification").evaluate(m, str(shared_data(SHIPPED[name][0])), split="test", n_boot=200)
    assert ev["ece"] < ev["ece_uncalibrated"] and ev["refer_rate"] <= 0.10, ev


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_shipped_classifier_carries_a_drift_reference_from_its_validation_split(name):
    """What the service's drift monitor tests against (metrics/drift.py): the validation split's
    deciles of distance and score, and its refer and positive rates at the model's thresholds."""
    m = load_model(name)
    ref = m.spec.drift
    assert ref is not None and ref.n == m.manifest["ood"]["n_val"]
    assert set(ref.distributions) == {"distance", "score"} and set(ref.rates) == {"refer", "positive"}
    for bins in ref.distributions.values():
        assert sum(bins.shares) == pytest.approx(1.0, abs=1e-4) and len(bins.edges) >= 5
    assert ref.rates["refer"] == pytest.approx(1 - m.manifest["ood"]["quantile"], abs=0.01)
    # the fingerprint distance a prediction reports is what the reference binned
    x = np.zeros((1, *m.manifest["preprocessing"]["spatial_size"]), np.float32)
    (r,) = get_task("classification").infer(m, [medsight.io.Image(array=x, spacing=(1.0, 1.0))])
    assert r.distance is not None and r.to_dict()["distance"] == r.distance
