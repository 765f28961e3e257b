"""Running the ``medsight`` CLI in-process in tests."""

from __future__ import annotations

from typer.testing import CliRunner

from medsight.cli.main import app

runner = CliRunner()


def invoke(*args):
    """Run ``medsight ARGS...``; a traceback in its output fails the test (errors are one line)."""
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    text = result.stdout + (result.stderr or "")
    assert "Traceback" not in text, text
    return result
