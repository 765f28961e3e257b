"""Every registered task renders a report and a model card through the shared templates, with
every name escaped; a new task brings its own sections without editing the report package."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from report_examples import EXAMPLES, HOSTILE, HOSTILE_FILE
from report_html import read_page

from medsight.models.saved import SavedModel
from medsight.report import Section
from medsight.tasks import base
from medsight.tasks.base import Task, get_task, list_tasks


def _example(name: str):
    if name not in EXAMPLES:
        pytest.fail(f"task {name!r} has no example evaluation in tests/report/report_examples.py")
    return EXAMPLES[name]()


def _render(task_name, tmp_path):
    ev, manifest = _example(task_name)
    model = SavedModel(network=torch.nn.Identity(), manifest=manifest)
    path = get_task(task_name).write_report(ev, tmp_path / task_name / "report.html", model=model)
    return path.read_text(encoding="utf-8"), ev, manifest


@pytest.mark.parametrize("task_name", list_tasks())
def test_every_task_writes_a_self_contained_report_with_every_name_escaped(task_name, tmp_path):
    html, ev, manifest = _render(task_name, tmp_path)
    page = read_page(html)
    # nothing from the evaluation became markup: no script, no injected image (read_page refuses
    # an image that is not an embedded PNG), no attribute break-out
    assert "<script" not in html.lower() and "script" not in page.tags
    assert html.count("<img") == len(page.images)
    assert HOSTILE in page.text and HOSTILE_FILE in page.text  # shown as text, as written
    assert page.title.endswith(ev["model"]) and page.headings[0] == page.title
    assert "Provenance" in page.headings
    provenance = dict(row for row in page.table("model") if len(row) == 2)
    assert provenance["model"] == ev["model"] and provenance["weights sha256"] == manifest["weights_sha256"]
    assert "link" not in page.tags and 'src="http' not in html  # self-contained: nothing fetched


@pytest.mark.parametrize("task_name", list_tasks())
def test_every_task_writes_a_model_card_from_its_manifest(task_name):
    _, manifest = _example(task_name)
    card = get_task(task_name).model_card(manifest, reproduce="medsight train configs/x.yaml --out runs/x")
    assert card.startswith(f"# {manifest['name']} (v{manifest['version']})\n")
    assert manifest["description"] in card
    assert HOSTILE in card  # Markdown is text: a label is written as it is
    for heading in ("## Model", "## Training data", "## Reproduce", "## Limits"):
        assert f"\n{heading}\n" in card, heading
    assert "medsight train configs/x.yaml --out runs/x" in card
    assert "\n\n\n" not in card and card.endswith(".\n")


def test_reports_of_every_task_share_one_stylesheet(tmp_path):
    styles = {name: read_page(_render(name, tmp_path)[0]).styles for name in list_tasks()}
    assert all(len(s) == 1 and s[0].strip() for s in styles.values()), styles
    assert len({s[0] for s in styles.values()}) == 1, "each task's report has its own CSS"


def test_templates_ship_inside_the_package():
    folder = resources.files("medsight.report") / "templates"
    names = {p.name for p in folder.iterdir()}
    assert {"report.html.j2", "card.md.j2"} <= names
    for task_name in list_tasks():
        ev, manifest = _example(task_name)
        task = get_task(task_name)
        for section in (task.report_section(ev), task.card_section(manifest)):
            assert section.folder is not None or section.template in names, section.template


class _BlobSize(Task):
    """A task defined outside MedSight: image-level regression of a blob's size."""

    name = "blob-size"

    def __init__(self, folder=None):
        self.folder = folder

    def train(self, cfg, *, run_dir, observers=(), resume=False):
        raise NotImplementedError

    def evaluate(self, model, data, *, split="test", **options):
        raise NotImplementedError

    def infer(self, model, images, *, inputs=None):
        raise NotImplementedError

    def report_section(self, evaluation, *, model=None):
        return Section("blob.html.j2", {"title": f"Blob size: {evaluation['model']}", "mae": evaluation["mae_mm"],
                                        "provenance": [("model", evaluation["model"])]}, folder=self.folder)

    def card_section(self, manifest):
        return Section("blob.md.j2", {"mae": manifest["metrics"]["test"]["mae_mm"]}, folder=self.folder)


def test_a_new_task_brings_its_own_sections_without_editing_the_report_package(tmp_path, monkeypatch):
    folder = tmp_path / "blob_task" / "templates"
    folder.mkdir(parents=True)
    (folder / "blob.html.j2").write_text("<h2>Error</h2><p>mean absolute error {{ mae | num(2) }} mm</p>\n")
    (folder / "blob.md.j2").write_text("## Model\n- Regression of a blob's size; MAE {{ mae }} mm\n")
    monkeypatch.setitem(base._TASKS, "blob-size", lambda: _BlobSize(folder))
    assert "blob-size" in list_tasks()
    task = get_task("blob-size")

    html = task.write_report({"model": f"blob{HOSTILE}", "mae_mm": 0.123}, tmp_path / "r.html").read_text()
    page = read_page(html)
    assert page.title == f"Blob size: blob{HOSTILE}" and "<script" not in html
    assert "Error" in page.headings and "mean absolute error 0.12 mm" in page.text
    classification_css = read_page(_render("classification", tmp_path)[0]).styles
    assert page.styles == classification_css  # the shared page, not a copy of it

    card = task.model_card({"name": "blob", "version": "1", "metrics": {"test": {"mae_mm": 0.5}}})
    assert card.startswith("# blob (v1)") and "MAE 0.5 mm" in card and "## Limits" in card
