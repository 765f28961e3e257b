"""Contract over every registered task (:func:`medsight.tasks.base.list_tasks`): through the
task's own hooks only, a tiny model trains, saves and loads back; ``infer`` on synthetic images
gives results of the task's type that ``to_dict`` makes JSON; ``evaluate`` gives an evaluation
that is JSON and renders as a report; the manifest renders as a model card; an image of the
wrong dimensions is a ShapeError; ``error_result`` round-trips through JSON.

A task registered later is covered without an edit here; it fails with a clear message until
tests/tasks/task_examples.py gives its example (a tiny config, data, images).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from task_examples import EXAMPLES

from medsight.config import config_from_dict
from medsight.errors import DataError, ShapeError
from medsight.io.image import Image
from medsight.models.saved import load_model
from medsight.tasks.base import get_task, list_tasks
from medsight.tasks.writers import write


@pytest.fixture(scope="module", params=list_tasks())
def trained(request, tmp_path_factory):
    """``(task, example, model as trained, model loaded back, run folder)`` for each task."""
    name = request.param
    if name not in EXAMPLES:
        pytest.fail(f"task {name!r} has no contract fixture: add one in tests/tasks/task_examples.py (EXAMPLES)")
    root = tmp_path_factory.mktemp(f"contract-{name}")
    example = EXAMPLES[name](root)
    task = get_task(name)
    run = root / "run"
    model = task.train(config_from_dict({**example.config, "version": "0.3.1"}), run_dir=run)
    assert model.path is not None, f"{name}.train returned a model it did not save"
    return task, example, model, load_model(model.path), run


def _findings(results):
    return [[f.to_dict() for f in r.findings()] for r in results]


def test_trained_model_is_saved_and_loads_back_as_the_same_model(trained):
    task, example, model, loaded, _ = trained
    assert loaded.task == task.name and loaded.name == example.config["name"]
    assert loaded.version == "0.3.1"  # the config's version, saved
    assert loaded.labels == model.labels and loaded.manifest["weights_sha256"] == model.manifest["weights_sha256"]
    got, want = _findings(task.infer(loaded, example.images)), _findings(task.infer(model, example.images))
    assert [[(f["name"], f["text"]) for f in r] for r in got] == [[(f["name"], f["text"]) for f in r] for r in want]
    values = [(g["value"], w["value"]) for rg, rw in zip(got, want) for g, w in zip(rg, rw) if w["value"] is not None]
    assert values and all(g == pytest.approx(w, abs=1e-6) for g, w in values)


def test_infer_gives_one_result_of_the_tasks_type_per_image_and_to_dict_is_json(trained):
    task, example, _, model, _ = trained
    names = [f"input-{i}" for i in range(len(example.images))]
    results = task.infer(model, example.images, inputs=names)
    assert [r.input for r in results] == names
    for r, image in zip(results, example.images):
        assert isinstance(r, task.result_type) and r.ok
        d = r.to_dict()
        back = json.loads(json.dumps(d, allow_nan=False))  # strict JSON: no arrays, no numpy scalars, no NaN
        assert back["input"] == r.input
        assert r.provenance.model == model.name and r.provenance.weights_sha256 == model.manifest["weights_sha256"]
        assert r.findings(), f"{task.name} result has no findings"
        row = write(r, "csv")
        assert set(row) <= {"input", *task.result_type.csv_columns(model), "error"}
        for a in r.artifacts():  # a mask is in the input's geometry
            if isinstance(a.value, Image):
                assert a.value.same_geometry(image)


def test_cases_are_inferred_as_their_primary_image_named_by_their_id(trained):
    from medsight.data.case import Case

    task, example, _, model, _ = trained
    cases = [Case(f"case-{i}", {"image": im}, covariates={"site": "x"}) for i, im in enumerate(example.images)]
    got = task.infer_cases(model, cases)
    assert [r.input for r in got] == [c.id for c in cases]
    assert _findings(got) == _findings(task.infer(model, example.images))


def test_an_image_of_the_wrong_dimensions_is_a_shape_error(trained):
    task, _, _, model, _ = trained
    wrong = 3 if model.spatial_dims == 2 else 2
    image = Image(np.zeros((1, *(12,) * wrong), np.float32), spacing=(1.0,) * wrong, source="wrong.nii.gz")
    with pytest.raises(ShapeError, match=f"{wrong}D"):
        task.infer(model, [image])


def test_evaluation_is_json_and_renders_as_a_report(trained, tmp_path):
    task, example, _, model, _ = trained
    ev = task.evaluate(model, str(example.data), split=task.default_split, **example.evaluate)
    assert ev["model"] == model.name
    json.loads(json.dumps(ev))  # the CLI's evaluate --json writes it
    path = task.write_report(ev, tmp_path / "report.html", model=model)
    html = path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html") and html.rstrip().endswith("</html>")
    assert model.name in html and "<script" not in html.lower()


def test_training_wrote_a_report_and_the_manifest_renders_as_a_card(trained):
    task, _, _, model, run = trained
    card = task.model_card(model.manifest, reproduce="medsight train contract.yaml")
    assert card.startswith(f"# {model.name} (v{model.version})\n")
    assert "medsight train contract.yaml" in card
    assert all(label in card for label in model.labels if label != "background")
    assert (model.path / "MODEL_CARD.md").read_text().startswith(f"# {model.name} (v{model.version})\n")
    assert (run / "evaluation" / "report.html").is_file()


@pytest.mark.parametrize("name", list_tasks())
def test_error_result_round_trips_through_json(name):
    task = get_task(name)
    exc = DataError("cannot read this <file>")
    r = task.error_result("scans/bad.dcm", exc)
    assert r.ok is False and r.input == "scans/bad.dcm"
    text = json.dumps(r.to_dict(), allow_nan=False)
    assert "cannot read this <file>" in text and type(exc).__name__ in text  # the message and the kind of error
    if dataclasses.is_dataclass(r):
        assert type(r)(**json.loads(text)) == r
    row = write(r, "csv")
    assert row["input"] == "scans/bad.dcm" and "cannot read this <file>" in row["error"]
    assert not r.findings() and not r.artifacts()
