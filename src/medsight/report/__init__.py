"""Reports: HTML pages with embedded plots and Markdown model cards, from Jinja2 templates.

A task provides a :class:`Section` for each (``Task.report_section``, ``Task.card_section``);
:func:`render_report` and :func:`render_card` put it inside the shared base templates.
"""

from medsight.report.render import (
    Section,
    modality_fingerprint,
    modality_refusal,
    render_card,
    render_report,
    write_report,
)

__all__ = ["Section", "render_report", "write_report", "render_card", "modality_fingerprint", "modality_refusal"]
