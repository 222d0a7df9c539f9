"""The hub's "slow to start" warning, which every Slurm spawn would trigger, kept at debug level.

rcsc3's hub configs set `slow_spawn_timeout` to 0.3 s so the student gets the spawn page at
once. JupyterHub then warns "User X is slow to start (timeout=0.3)" for every spawn that takes
longer, which every Slurm job does: 300 students starting a class would write 300 warnings that
mean nothing. The message still shows with `--debug`.
"""

from __future__ import annotations

import logging

SLOW_TO_START = "is slow to start (timeout="
#: The logger of JupyterHub's application (traitlets names it after the class), used by its handlers.
HUB_LOGGER = "JupyterHub"


class SlowSpawnAsDebug(logging.Filter):
    """Turns JupyterHub's "is slow to start" warning into a debug record (dropped unless debug is on)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and SLOW_TO_START in record.getMessage():
            if not self._logger.isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def slow_spawn_warnings_as_debug(logger: logging.Logger | None = None) -> None:
    """Install the filter on the hub's logger (once; a config file loaded twice adds nothing)."""
    logger = logger or logging.getLogger(HUB_LOGGER)
    if not any(isinstance(f, SlowSpawnAsDebug) for f in logger.filters):
        logger.addFilter(SlowSpawnAsDebug(logger))
