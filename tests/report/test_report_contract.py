"""Every registered task renders a report and a model card through the shared templates, with
every name escaped; a new task brings its own sections without editing the report package (the
example plug-in task, tests/blobsize, is one of the registered tasks: its templates live in its own
folder)."""

from __future__ import annotations

from importlib import resources

import pytest
import torch
from report_examples import EXAMPLES, HOSTILE, HOSTILE_FILE
from report_html import read_page

from medsight.models.saved import SavedModel
from medsight.tasks.base import get_task, list_tasks


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
    for heading in ("## Intended use", "## Out-of-scope use", "## Model", "## Training data", "## Training fingerprint",
                    "## Calibration", "## Refer rule", "## Reproduce", "## Limits"):
        assert f"\n{heading}\n" in card, heading
    assert "Not stated by this task." not in card  # every task states its fingerprint, calibration and refer rule
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
