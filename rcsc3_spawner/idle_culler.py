"""Give back the GPUs of servers nobody uses: jupyterhub-idle-culler, with each profile's idle_timeout.

jupyterhub-idle-culler (the real package) runs as a hub-managed service and stops servers idle for
longer than a timeout. Its `cull_arbiter_hook` decides per server: here, by the server's profile
(`user_options.profile`, in the server model the culler reads) and that profile's `idle_timeout`.
What counts as activity is what the student's server reports (the hub configs turn off the proxy's
byte counting, which would count an open desktop tab's pictures): API use, kernels that run
(rcsc3_proxy/server/activity.py) and input in the desktop.

    c.JupyterHub.services.append(culler_service(c.RcSC3Spawner.profiles))
    c.JupyterHub.load_roles.append(CULLER_ROLE)
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from importlib import resources
from typing import Any

from .profiles import parse_profiles

SERVICE = "idle-culler"
TIMEOUTS_ENV = "RCSC3_IDLE_TIMEOUTS"
#: what the culler needs of the hub, nothing more
CULLER_ROLE = {"name": "rcsc3-idle-culler", "description": "stop idle servers (jupyterhub-idle-culler)",
               "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
               "services": [SERVICE]}


def timeouts(profiles: list[Any]) -> dict[str, float]:
    """profile slug -> seconds of inactivity before its servers are culled."""
    return {p.slug: p.idle_timeout for p in parse_profiles(profiles)}


def culler_service(profiles: list[Any], cull_every: int = 60) -> dict:
    """The hub-managed service entry for c.JupyterHub.services."""
    limits = timeouts(profiles)
    config = str(resources.files("rcsc3_spawner") / "idle_culler_config.py")
    return {
        "name": SERVICE,
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--config={config}",
                    f"--cull-every={cull_every}", f"--timeout={int(max(limits.values()))}"],
        "environment": {TIMEOUTS_ENV: json.dumps(limits)},
    }


def cull_arbiter(inactive: timedelta, inactive_limit: int, server: dict, **kwargs: Any) -> bool:
    """The culler's hook: cull when the server was idle longer than its profile's idle_timeout."""
    limits = json.loads(os.environ.get(TIMEOUTS_ENV) or "{}")
    profile = (server.get("user_options") or {}).get("profile")
    return inactive.total_seconds() >= limits.get(profile, inactive_limit)
