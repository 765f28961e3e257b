"""A worker process that is SIGKILLed, as the kernel's OOM killer would, whenever a batch it
runs holds one given instance (the SOPInstanceUID in ``$MEDSIGHT_TEST_POISON_SOP``).

Tests put :func:`crashing_worker_process` in place of ``runner._worker_process``; the
supervisor then spawns it as its worker process.
"""

from __future__ import annotations

import os
import signal
from typing import Any

POISON_ENV = "MEDSIGHT_TEST_POISON_SOP"


def crashing_worker_process(*args: Any) -> None:
    from medsight.service import runner
    from medsight.service.process import Processor

    poison = os.environ[POISON_ENV]
    real = Processor.run_instances

    def run_instances(self: Processor, session_factory: Any, jobs: list[Any]) -> Any:
        if any(j.payload.get("sop_uid") == poison for j in jobs):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, session_factory, jobs)

    Processor.run_instances = run_instances  # type: ignore[method-assign]
    runner._worker_process(*args)
