"""Rendering reports and model cards from Jinja2 templates shipped in the package.

A report or a card is one base template (``templates/report.html.j2``: the page and its CSS,
written once; ``templates/card.md.j2``: title, reproduce command, limits) around a
:class:`Section` that a task provides (its template and the values it shows). HTML is
autoescaped, so a label, a file name or an error message cannot add markup; images are
embedded as base64 PNG, so a report is one self-contained file. Markdown cards are not
escaped: they are text.

A new task brings its own section templates in its own folder (``Section.folder``) and
finds the base templates by name; nothing in this package changes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Section", "render_report", "write_report", "render_card", "CARD_STATEMENTS", "modality_fingerprint",
           "modality_refusal"]

REPORT_TEMPLATE = "report.html.j2"
CARD_TEMPLATE = "card.md.j2"


@dataclass(frozen=True)
class Section:
    """A task's part of a report or model card.

    Attributes:
        template: the section's template name (e.g. ``classification.html.j2``); an ``.html.j2``
            template is autoescaped, an ``.md.j2`` one is not.
        context: the values the template shows. A report section also gives ``title`` (the
            page's heading) and ``provenance`` (``(name, value)`` pairs) to the base template.
        folder: the folder holding ``template`` when it is not one of MedSight's own (a task's
            own package); the base templates are found from there by name.
    """

    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    folder: Path | None = None


def _num(v: Any, nd: int = 4) -> str:
    """A value for a table cell: ``–`` for a missing one, floats to ``nd`` decimals, a mapping
    (the package versions) as ``name value, ...``."""
    if v is None:
        return "–"
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_num(x, nd)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _interval(v: Any, nd: int = 4) -> str:
    """A ``[low, high]`` interval as ``low – high``; ``–`` when missing."""
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f"{v[0]:.{nd}f} – {v[1]:.{nd}f}"
    return str(v)


def _mean_sd(s: Mapping[str, Any] | None, nd: int = 3) -> str:
    """A summary entry (``mean``, ``sd``, ``n_undefined``) as ``mean ± sd (k undefined)``."""
    if not s or s.get("mean") is None:
        return "–"
    extra = f" ({s['n_undefined']} undefined)" if s.get("n_undefined") else ""
    return f"{s['mean']:.{nd}f} ± {s['sd']:.{nd}f}{extra}"


@functools.lru_cache(maxsize=16)
def _environment(folder: Path | None) -> Any:
    import jinja2

    loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("medsight.report", "templates")]
    if folder is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(folder)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"),
                                            disabled_extensions=("md.j2", "md"), default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=_num, interval=_interval, mean_sd=_mean_sd)
    return env


def _render(name: str, section: Section, context: Mapping[str, Any]) -> str:
    env = _environment(section.folder)
    return env.get_template(name).render({**context, "section": section.template})


def render_report(section: Section) -> str:
    """The self-contained HTML page of one task section (see :class:`Section`)."""
    return _render(REPORT_TEMPLATE, section, section.context)


def write_report(section: Section, path: str | Path) -> Path:
    """Write :func:`render_report` of ``section`` to ``path`` (its folder is made); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(section), encoding="utf-8")
    return path


#: The card sections every task states (as lists of lines in its section's context): what the
#: model was trained on, how far its probabilities can be taken at their word, and when it refers.
CARD_STATEMENTS = ("card_fingerprint", "card_calibration", "card_refer")


def modality_fingerprint(modalities: list[str] | None) -> str:
    """The card's line naming the DICOM modalities a model accepts."""
    return f"DICOM modalities: {', '.join(modalities) if modalities else 'any (no modality check)'}"


def modality_refusal(modalities: list[str] | None, *, dicom: str, files: str) -> list[str]:
    """The card's refer-rule line for a model that refuses other DICOM modalities and cannot
    check ``files`` (formats without a modality); none for a model that accepts any."""
    if not modalities:
        return []
    return [f"Refused with an error: a DICOM {dicom} whose Modality is not {', '.join(modalities)}. A {files} "
            f"carries no modality and is not refused (see the failure modes measured)"]


def default_intended_use(manifest: Mapping[str, Any]) -> list[str]:
    """The intended use a card states when the config gave none."""
    modalities = ", ".join(manifest.get("modalities") or []) or "medical"
    return [f"Research on {modalities} images like its training data (below), as a second reader: a clinician "
            "reviews every output before it informs care."]


def default_out_of_scope(manifest: Mapping[str, Any]) -> list[str]:
    """The out-of-scope uses a card states when the config gave none."""
    return ["Images of another modality, body part, view, resolution or population than its training data.",
            "Use as the only reader, or any decision about a patient without a clinician's review."]


def render_card(section: Section, manifest: Mapping[str, Any], *, reproduce: str | None = None) -> str:
    """A Markdown model card: the manifest's name, version and description, intended and
    out-of-scope use, the task's section (with its training fingerprint, calibration and refer
    rule: :data:`CARD_STATEMENTS`), the failure modes measured, the command that retrains the
    model (``reproduce``, else ``manifest["reproduce"]``), notes and the limits."""
    return _render(CARD_TEMPLATE, section, {
        "name": manifest.get("name"), "version": manifest.get("version"),
        "description": manifest.get("description") or "", "reproduce": reproduce or manifest.get("reproduce"),
        "intended_use": manifest.get("intended_use") or default_intended_use(manifest),
        "out_of_scope": manifest.get("out_of_scope") or default_out_of_scope(manifest),
        "failure_modes": list(manifest.get("failure_modes") or []), "notes": list(manifest.get("notes") or []),
        **{k: None for k in CARD_STATEMENTS}, **section.context})
