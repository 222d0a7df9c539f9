"""Start the Remote Desktop while the Jupyter server is still importing.

With prestart on (the GPU profile), the desktop used to start when jupyter-server-proxy
loaded our entry point and the server listened: just when the student's browser starts
loading JupyterLab, so on a 2-core allocation xfce and JupyterLab's page slowed each
other down. The server's first ~2 s are single-threaded imports, which leave the other
cores idle: rcsc3-singleuser calls `start_desktop_early()` before those imports, and the
desktop is painted by the time JupyterLab asks for it. The supervisor started here is
the one the `desktop` entry point uses later (see `launcher.ensure_supervisor`).

With a single CPU nothing runs in parallel: the early start is skipped and the desktop
starts once the server listens, as before.
"""

from __future__ import annotations

import logging
import os

from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

from .desktop.settings import RemoteDesktop
from .desktop.supervisor_launcher import ensure_supervisor, running_supervisor

log = logging.getLogger("rcsc3.desktop")

CONFIG_NAME = "jupyter_server_config"


def jupyter_server_config(paths: list[str] | None = None) -> Config:
    """The Jupyter server's config files (.py, then .json, lowest priority directory first), merged
    the way the server will merge them, read before the server exists."""
    if paths is None:
        from jupyter_core.paths import jupyter_config_path

        paths = jupyter_config_path()
    merged = Config()
    for directory in reversed(paths):
        for loader in (PyFileConfigLoader(f"{CONFIG_NAME}.py", path=directory),
                       JSONFileConfigLoader(f"{CONFIG_NAME}.json", path=directory)):
            try:
                merged.merge(loader.load_config())
            except ConfigFileNotFound:
                continue
    return merged


def allocation_cpus(env: dict[str, str] | None = None) -> int:
    """CPUs this job may use on this node: Slurm's count, bounded by the process's affinity."""
    env = os.environ if env is None else env
    usable = len(os.sched_getaffinity(0))
    try:
        slurm = int(env.get("SLURM_CPUS_ON_NODE", ""))
    except ValueError:
        return usable
    return max(1, min(usable, slurm))


def start_desktop_early(settings: RemoteDesktop | None = None) -> bool:
    """Start the desktop now if prestart is on and the allocation has a second CPU.

    Returns whether it started. Never raises: a config file that fails here is left
    for the Jupyter server to report, and the desktop then starts the usual way.
    """
    try:
        if running_supervisor() is not None:
            return True
        if settings is None:
            settings = RemoteDesktop(config=jupyter_server_config())
        if not settings.prestart:
            return False
        if allocation_cpus() < 2:
            log.info("one CPU: the desktop starts once the Jupyter server listens")
            return False
        ensure_supervisor(settings, prestart_now=True)
        return True
    except Exception as e:  # the server's own start must not depend on this
        log.warning("early desktop start skipped (%s: %s); it starts with the Jupyter server", type(e).__name__, e)
        return False
