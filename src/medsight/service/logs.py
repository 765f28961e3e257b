"""What the service writes about errors: one-line log records and error texts without header values.

Third-party libraries put the values they fail on into their messages: pydicom ("Unable to
convert '19XX-07-01' to 'DA' object"), highdicom, SQLAlchemy (the statement's parameters,
a PatientID among them) and psycopg. So the service never logs or stores their texts:

* :func:`safe_error` is how an exception is written into ``jobs.error``, ``results.error``,
  the audit trail, an HTTP body or a log line: a MedSight error keeps its own message with
  any third-party text it quoted replaced, any other exception is reduced to its type;
* :class:`OneLineFormatter` writes each record on one line (a grep finds what it holds) and a
  traceback as its frames and exception types, without messages;
* records of pydicom, highdicom and Python warnings (which quote header values) keep their
  origin and category, not their text.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from pathlib import Path

from medsight.errors import MedSightError

__all__ = ["safe_error", "OneLineFormatter", "configure_logging", "WITHHELD"]

#: what replaces a third-party exception's text
WITHHELD = "details withheld"

#: loggers whose messages may quote header values
_QUOTING_LOGGERS = ("pydicom", "highdicom", "py.warnings")
_WARNING_CATEGORY = re.compile(r"\b([A-Z]\w*(?:Warning|Error))\b")


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def safe_error(exc: BaseException) -> str:
    """One line describing ``exc`` with no text of a third-party library in it.

    A :class:`~medsight.errors.MedSightError` keeps its message, with the text of every
    non-MedSight exception in its chain (``__cause__``/``__context__``) that it quotes replaced
    by that exception's type; any other exception becomes its type name.

    Example:
        >>> try:
        ...     raise ValueError("Unable to convert '19XX' to 'DA' object")
        ... except ValueError as e:
        ...     safe_error(e)
        'ValueError'
    """
    if not isinstance(exc, MedSightError):
        return type(exc).__name__
    text = str(exc)
    for e in _chain(exc)[1:]:
        if isinstance(e, MedSightError):
            continue
        raw = str(e)
        for piece in sorted({raw, *raw.splitlines()}, key=len, reverse=True):
            if len(piece.strip()) >= 3:
                text = text.replace(piece, f"{WITHHELD}")
    return " ".join(text.split())


class OneLineFormatter(logging.Formatter):
    """``time level logger message`` on one line; tracebacks as frames and types only."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_text = None  # another handler's formatter may have cached the full traceback there
        if any(record.name == n or record.name.startswith(n + ".") for n in _QUOTING_LOGGERS):
            found = _WARNING_CATEGORY.search(record.getMessage())
            record.msg, record.args = f"{found.group(1) if found else record.levelname.lower()} ({WITHHELD})", None
        text = super().format(record)
        return " ".join(text.split("\n")).replace("\r", " ")

    def formatException(self, ei: tuple) -> str:  # noqa: N802 - logging's name
        _, exc, tb = ei
        frames = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}"
                            for f in reversed(traceback.extract_tb(tb)[-6:]))
        causes = " from ".join(safe_error(e) for e in _chain(exc)) if exc is not None else "?"
        return f"| {causes} | at {frames}"

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return "| stack withheld"


def configure_logging(level: str | int | None = None, *, fmt: str | None = None) -> None:
    """Send every record of this process to stderr through :class:`OneLineFormatter` (the root
    logger's handlers are replaced; its level is set when ``level`` is given), with Python
    warnings routed through logging, so that they are written the same way."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(fmt) if fmt else OneLineFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
    logging.captureWarnings(True)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
