"""The hub's "is slow to start" warning, logged for every Slurm spawn, goes to the debug level."""

from __future__ import annotations

import logging

from rcsc3_spawner.hub_log import slow_spawn_warnings_as_debug


def _logger(level: int) -> tuple[logging.Logger, list[logging.LogRecord]]:
    logger = logging.getLogger(f"rcsc3-test-hub-log-{level}")
    logger.setLevel(level)
    logger.propagate = False
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.handlers[:] = [handler]
    logger.filters.clear()
    return logger, records


def test_slow_to_start_is_debug_and_other_warnings_stay():
    logger, records = _logger(logging.INFO)
    slow_spawn_warnings_as_debug(logger)
    slow_spawn_warnings_as_debug(logger)  # a config loaded twice adds one filter
    assert len(logger.filters) == 1
    logger.warning("User %s is slow to start (timeout=%s)", "student1", 0.3)
    logger.warning("User %s: server did not start in time", "student2")
    assert [r.getMessage() for r in records] == ["User student2: server did not start in time"]
    assert records[0].levelno == logging.WARNING


def test_slow_to_start_shows_with_debug_on():
    logger, records = _logger(logging.DEBUG)
    slow_spawn_warnings_as_debug(logger)
    logger.warning("User %s is slow to start (timeout=%s)", "student1", 0.3)
    [record] = records
    assert record.levelno == logging.DEBUG and record.levelname == "DEBUG"
    assert "student1 is slow to start" in record.getMessage()
