"""Named crash points for fault-injection tests.

With ``MC_CRASH_AT=<point>`` in its environment, a process exits hard (no cleanup, no
commit, like SIGKILL or a power cut) the first time it reaches that point. Tests kill
the orchestrator at each point, restart it, and prove nothing is lost or done twice.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

ENV = "MC_CRASH_AT"
EXIT_CODE = 137

POINTS = frozenset(
    {
        "after_mission_claim",  # missions allocated and committed, nothing called yet
        "after_session_open",  # worker opened the session; not recorded
        "after_job_start",  # worker started the job; not recorded
        "after_writer_batch",  # writer stored a page; cursor not saved
        "after_writer_complete",  # writer confirmed the mission; FINALIZADO not recorded
        "after_session_close",  # worker closed the session; slot not released
    }
)


def crashpoint(name: str) -> None:
    assert name in POINTS, name
    if os.environ.get(ENV) == name:
        logger.warning("CRASH POINT %s: exiting hard", name)
        logging.shutdown()
        os._exit(EXIT_CODE)
