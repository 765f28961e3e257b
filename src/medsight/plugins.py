"""Plug-ins: tasks (and what they register) that live outside MedSight's own package.

A plug-in is a Python module that registers its task with
:func:`medsight.tasks.base.register_task` when imported. MedSight imports:

* every ``medsight.tasks`` entry point of the installed distributions (a package declares
  ``[project.entry-points."medsight.tasks"] mytask = "mypackage.mytask"``), and
* every module named in ``$MEDSIGHT_PLUGINS`` (comma-separated dotted names), for code that
  is not installed (a research folder on ``PYTHONPATH``, the example task in the tests).

They are imported the first time a task or a run config is looked up; a module that cannot be
imported is a :class:`~medsight.errors.ConfigError` naming it, not a silent absence.
"""

from __future__ import annotations

import functools
import importlib
import os
from importlib.metadata import entry_points

from medsight.errors import ConfigError

__all__ = ["load", "ENV"]

ENV = "MEDSIGHT_PLUGINS"
#: MedSight's own task packages, imported the same way (first, before any plug-in).
BUILTIN = ("medsight.tasks.classification", "medsight.tasks.segmentation", "medsight.tasks.detection",
           "medsight.tasks.response")
_loaded: set[str] = set()


@functools.lru_cache(maxsize=1)
def _entry_point_modules() -> tuple[str, ...]:
    """The modules of the installed ``medsight.tasks`` entry points, read once per process
    (scanning the distributions' metadata takes milliseconds, and tasks are looked up per image)."""
    return tuple(ep.value.split(":")[0] for ep in entry_points(group="medsight.tasks"))


def _names() -> list[str]:
    return [*BUILTIN, *_entry_point_modules(), *(n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip())]


def load() -> None:
    """Import every plug-in module not imported yet."""
    for name in _names():
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"plug-in {name!r} (from ${ENV} or a medsight.tasks entry point) cannot be "
                              f"imported: {exc}") from None
        _loaded.add(name)
