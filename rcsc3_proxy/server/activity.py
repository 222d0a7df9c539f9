"""A running kernel is activity, even when it prints nothing for an hour.

The idle culler stops servers whose last activity is older than their profile's idle_timeout.
jupyter_server's own last activity moves on API requests and on kernel messages: a cell that
computes silently for longer than the timeout would look idle. While any kernel is busy, this
keeps a `*_last_activity` setting of the web app (which jupyter_server's last_activity() counts,
its documented hook for extensions) at "now", so the server reports itself active to the hub.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tornado.ioloop import PeriodicCallback

SETTING = "rcsc3_busy_kernels_last_activity"


def any_kernel_busy(kernel_manager) -> bool:
    for kernel_id in list(kernel_manager.list_kernel_ids()):
        try:
            if kernel_manager.get_kernel(kernel_id).execution_state == "busy":
                return True
        except KeyError:  # ended meanwhile
            continue
    return False


def watch_busy_kernels(web_app, kernel_manager, every: float = 5.0) -> PeriodicCallback:
    """Check every `every` seconds; returns the started callback."""

    def check() -> None:
        if any_kernel_busy(kernel_manager):
            web_app.settings[SETTING] = datetime.now(UTC)

    callback = PeriodicCallback(check, every * 1000)
    callback.start()
    return callback
