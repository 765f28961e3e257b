"""The response task: the simulated cohort, the manifest's errors, the recommendation rules, and
a small model trained, recommended with and evaluated through the CLI (synthetic data only)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medsight.cli.main import app
from medsight.data.synthetic_cohort import TREATMENTS, simulate, true_probabilities, write_cohort
from medsight.errors import ConfigError, DataError
from medsight.metrics.ood import distances
from medsight.tasks.response.data import CovariateCoder, read_response_manifest
from medsight.tasks.response.recommend import REFER_UNCERTAIN, REFER_UNLIKE, recommend

runner = CliRunner()


# -- the simulated cohort -----------------------------------------------------------------------
def test_cohort_is_seeded_and_keeps_every_counterfactual(tmp_path):
    a, b = simulate(50, seed=3), simulate(50, seed=3)
    assert all(np.array_equal(x.image, y.image) and x.treatment == y.treatment for x, y in zip(a, b))
    assert not np.array_equal(a[0].image, simulate(50, seed=4)[0].image)
    manifest = write_cohort(tmp_path / "c", 40, seed=3)
    rows = list(csv.DictReader(manifest.open()))
    cf = {r["patient"]: r for r in csv.DictReader((tmp_path / "c" / "counterfactuals.csv").open())}
    for r in rows:  # the factual outcome is the potential outcome of the treatment received
        assert int(r["outcome"]) == int(cf[r["patient"]][f"y_{r['treatment']}"])
        assert (tmp_path / "c" / r["image"]).is_file()
    assert "SYNTHETIC" in (tmp_path / "c" / "PROVENANCE.md").read_text()


def test_size_is_prognostic_texture_predictive_and_assignment_confounded():
    p_small, p_large = true_probabilities([8.0], [0.5], [62.0]), true_probabilities([24.0], [0.5], [62.0])
    assert (p_small > p_large).all()  # worse under every treatment
    best = [int(true_probabilities([16.0], [h], [62.0]).argmax()) for h in (0.0, 0.5, 1.0)]
    assert best == [TREATMENTS.index("immuno"), TREATMENTS.index("standard"), TREATMENTS.index("targeted")]
    cohort = simulate(2000, seed=0)
    stage_iv = [p.treatment for p in cohort if p.stage == "IV"]
    stage_i = [p.treatment for p in cohort if p.stage == "I"]
    assert np.mean(np.array(stage_iv) == 0) > 2 * np.mean(np.array(stage_i) == 0)  # later stage → standard


# -- the manifest -------------------------------------------------------------------------------
def _manifest(tmp_path: Path, rows: list[str], header: str = "patient,image,treatment,age,sex,outcome,split") -> Path:
    path = tmp_path / "m.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_manifest_errors_name_the_row(tmp_path):
    ok = "p1,a.png,standard,60,F,1,train"
    with pytest.raises(DataError, match=r"m.csv row 3: covariate 'age' is missing"):
        read_response_manifest(_manifest(tmp_path, [ok, "p2,b.png,standard,,F,0,train"]))
    with pytest.raises(DataError, match=r"m.csv row 3: outcome must be 1"):
        read_response_manifest(_manifest(tmp_path, [ok, "p2,b.png,standard,61,F,maybe,train"]))
    with pytest.raises(DataError, match=r"m.csv row 4: patient 'p1' is also in row 2 with outcome 1; here 0"):
        read_response_manifest(_manifest(tmp_path, [ok, "p2,b.png,standard,61,F,0,val", "p1,c.png,immuno,60,F,0,test"]))
    with pytest.raises(DataError, match="lacks the column"):
        read_response_manifest(_manifest(tmp_path, ["a.png,1"], header="image,outcome"))
    rows = read_response_manifest(_manifest(tmp_path, [ok, "p2,b.png,standard,61,M,0,val"]))
    assert [r.covariates for r in rows] == [{"age": "60", "sex": "F"}, {"age": "61", "sex": "M"}]


def test_covariates_are_encoded_with_the_training_statistics_and_unknown_levels_refused():
    coder = CovariateCoder.fit([{"age": "50", "sex": "F"}, {"age": "70", "sex": "M"}], ["age", "sex"])
    assert coder.width == 3
    assert coder.encode({"age": 60, "sex": "M"}, "case x").tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(DataError, match="case x: covariate 'sex' is 'X', which the model has not seen"):
        coder.encode({"age": 60, "sex": "X"}, "case x")
    with pytest.raises(DataError, match="case x: covariate 'age' is missing"):
        coder.encode({"sex": "F"}, "case x")
    with pytest.raises(DataError, match="must be finite"):
        coder.encode({"age": "nan", "sex": "F"}, "case x")
    assert CovariateCoder.from_manifest(coder.to_manifest()).encode({"age": 50, "sex": "F"}, "y").tolist() == [
        -1.0, 1.0, 0.0]


# -- the recommendation rules -------------------------------------------------------------------
def test_a_clear_leader_is_recommended_and_a_close_one_referred():
    clear = recommend(np.array([[0.3, 0.8], [0.32, 0.78], [0.28, 0.81]]), ["a", "b"])
    assert clear.recommended == "b" and clear.accepted
    assert clear.options[1]["interval"][0] < 0.8 < clear.options[1]["interval"][1]
    close = recommend(np.array([[0.50, 0.56], [0.55, 0.50], [0.52, 0.53]]), ["a", "b"])
    assert close.status == REFER_UNCERTAIN and close.recommended is None and close.leading in ("a", "b")
    assert "not more than its uncertainty" in close.reasons[-1]
    tiny = recommend(np.array([[0.50, 0.51], [0.50, 0.51]]), ["a", "b"], min_margin=0.02)  # agree, but too small
    assert tiny.status == REFER_UNCERTAIN


def test_an_input_far_from_the_training_data_is_referred_before_anything_else():
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (500, 3))
    mean, prec = train.mean(0), np.linalg.inv(np.cov(train.T))
    near, far = distances(np.array([[0.1, 0, 0], [8, 8, 8]]), {"mean": mean, "precision": prec})
    assert near < 1 < 10 < far
    out = recommend(np.array([[0.1, 0.9], [0.1, 0.9]]), ["a", "b"], distance=far, ood_threshold=4.0)
    assert out.status == REFER_UNLIKE and "distance" in out.reasons[-1]


def test_disagreeing_members_are_referred():
    out = recommend(np.array([[0.1, 0.9], [0.1, 0.3], [0.1, 0.95]]), ["a", "b"], max_sd=0.15)
    assert out.status == REFER_UNCERTAIN and "disagrees" in out.reasons[-1]


# -- a small model, end to end ------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("response")
    manifest = write_cohort(root / "cohort", 400, seed=11)
    cfg = root / "response.yaml"
    cfg.write_text(json.dumps({
        "task": "response", "name": "resp-test", "data": {"source": str(manifest),
                                                          "counterfactuals": str(root / "cohort/counterfactuals.csv")},
        "model": {"name": "resnet-small", "params": {"width": 8}},
        "response": {"treatments": list(TREATMENTS), "covariates": ["age", "sex", "stage"], "features": 8,
                     "propensity_weighting": True},
        "train": {"epochs": 4, "batch_size": 32, "threads": 1, "ensemble": 2}}))
    result = runner.invoke(app, ["train", str(cfg), "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def test_training_writes_a_model_that_recommends_and_says_why(small_model, tmp_path):
    model = small_model / "run" / "model"
    spec = json.loads((model / "manifest.json").read_text())
    assert spec["task"] == "response" and spec["response"]["members"] == 2
    assert [c["name"] for c in spec["response"]["covariates"]] == ["age", "sex", "stage"]
    assert spec["training"]["propensity"]["effective_sample_size"] > 0
    image = small_model / "cohort" / "images" / "pt00000.png"
    out = tmp_path / "rec.json"
    result = runner.invoke(app, ["recommend", "--model", str(model), "--image", str(image),
                                 "--covariates", "age=61", "sex=F", "stage=II", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rec = json.loads(out.read_text())
    assert [o["treatment"] for o in rec["options"]] == list(TREATMENTS)
    assert rec["status"] in ("recommend", "refer: uncertain", "refer: input unlike training data")
    assert (rec["recommended"] is None) is (rec["status"] != "recommend")
    assert all(o["interval"][0] <= o["probability"] <= o["interval"][1] for o in rec["options"])
    assert rec["reasons"] and rec["provenance"]["model"] == "resp-test"


def test_recommend_refuses_bad_covariates_and_models_that_do_not_recommend(small_model):
    model = str(small_model / "run" / "model")
    image = str(small_model / "cohort" / "images" / "pt00000.png")
    missing = runner.invoke(app, ["recommend", "--model", model, "--image", image, "--covariates", "age=61", "sex=F"])
    assert missing.exit_code == 2 and "covariate 'stage' is missing" in missing.output
    unknown = runner.invoke(app, ["recommend", "--model", model, "--image", image, "-c", "age=61", "sex=F",
                                  "stage=IX"])
    assert unknown.exit_code == 2 and "'IX', which the model has not seen" in unknown.output
    treatment = runner.invoke(app, ["recommend", "--model", model, "--image", image, "-c", "age=61", "sex=F",
                                    "stage=II", "treatment=surgery"])
    assert treatment.exit_code == 2 and "unknown treatment 'surgery'" in treatment.output
    malformed = runner.invoke(app, ["recommend", "--model", model, "--image", image, "-c", "age"])
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output
    not_an_image = small_model / "cohort" / "manifest.csv"
    bad = runner.invoke(app, ["recommend", "--model", model, "--image", str(not_an_image), "-c", "age=61",
                              "sex=F", "stage=II"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    import medsight

    with pytest.raises(ConfigError, match="makes no recommendations"):
        medsight.load("pneumonia-xray").recommend(image, {})


def test_evaluation_with_counterfactuals_scores_the_policy_as_synthetic(small_model, tmp_path):
    run = small_model / "run"
    test = json.loads((run / "evaluation" / "test.json").read_text())
    assert test["synthetic"] is True and 0 <= test["factual_auc"] <= 1 and test["ece"] >= 0
    pol = test["policy"]
    assert pol["oracle"]["value"] >= pol["policy"]["value"] and pol["oracle"]["value"] >= pol["best_single"]["value"]
    assert pol["regret"]["accepted"]["n"] + pol["regret"]["referred"]["n"] == test["n"]
    assert set(test["features"]) >= {"size", "texture", "location", "age"}
    assert test["features"]["texture"]["truth"]["role"] == "predictive"
    assert test["features"]["size"]["truth"]["role"] == "prognostic"
    assert "SYNTHETIC" in (run / "evaluation" / "report.html").read_text()
    out = tmp_path / "ev.json"
    result = runner.invoke(app, ["evaluate", "--model", str(run / "model"), "--data",
                                 str(small_model / "cohort" / "manifest.csv"), "--split", "val",
                                 "--counterfactuals", str(small_model / "cohort" / "counterfactuals.csv"),
                                 "--n-boot", "200", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["policy"]["n"] == json.loads(out.read_text())["n"]


def test_an_unknown_treatment_in_the_data_names_the_row(small_model, tmp_path):
    rows = (small_model / "cohort" / "manifest.csv").read_text().splitlines()
    rows[5] = rows[5].replace(rows[5].split(",")[2], "surgery", 1)
    bad = tmp_path / "manifest.csv"
    bad.write_text("\n".join(rows).replace("images/", str(small_model / "cohort" / "images") + "/") + "\n")
    result = runner.invoke(app, ["evaluate", "--model", str(small_model / "run" / "model"), "--data", str(bad),
                                 "--split", "all"])
    assert result.exit_code == 2 and "manifest.csv row 6: unknown treatment 'surgery'" in result.output


def test_an_image_that_does_not_read_names_the_row(small_model, tmp_path):
    rows = (small_model / "cohort" / "manifest.csv").read_text().splitlines()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows[3] = rows[3].replace(rows[3].split(",")[1], str(tmp_path / "broken.png"), 1)
    bad = tmp_path / "manifest.csv"
    bad.write_text("\n".join(rows).replace("images/", str(small_model / "cohort" / "images") + "/") + "\n")
    result = runner.invoke(app, ["evaluate", "--model", str(small_model / "run" / "model"), "--data", str(bad),
                                 "--split", "all"])
    assert result.exit_code == 2 and "manifest.csv row 4: the image does not read" in result.output
