"""JupyterHub configuration for the rcsc3 demo: `make demo` on one machine.

The hub, the proxy and the one-host Slurm "lab" (`rcsc3 lab up`) all run here.
For a real cluster start from production/jupyterhub_config.py instead.
"""

import os

from rcsc3_spawner.hub_log import slow_spawn_warnings_as_debug

c = get_config()  # noqa: F821  (provided by JupyterHub's config loader)

# Where students connect.
c.JupyterHub.bind_url = os.environ.get("RCSC3_HUB_URL", "http://127.0.0.1:8000")
# The real configurable-http-proxy (installed from npm by `make proxy`).
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy"]
# Jobs reach the hub API here; on a cluster this is the hub's address on the compute network.
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_connect_ip = "127.0.0.1"

# Students' servers are Slurm jobs: a hub restart must not cancel them.
c.JupyterHub.cleanup_servers = False

# Local unix accounts (PAM): student1..3 made by `rcsc3 lab users`.
c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = {f"student{i}" for i in range(1, 4)} | {"teacher"}
c.Authenticator.admin_users = {"teacher"}
c.JupyterHub.allow_named_servers = True


def landing_page(handler):
    """Admins (the teacher) land on the admin page; students on their server."""
    user = handler.current_user
    if user is not None and user.admin:
        return handler.hub.base_url + "admin"
    return None  # JupyterHub's default: the student's own server


c.JupyterHub.default_url = landing_page
c.JupyterHub.named_server_limit_per_user = 2
# The spawn page right after "Start". By default the hub holds the form's answer for a second
# (an API spawn's for up to 10 s) in case the server is up by then, which a Slurm job never is.
# Within 0.3 s bad options are refused (the form again, or 400 from the REST API) and so,
# normally, is a job sbatch refuses; later errors show on the spawn page (progress events).
# An API spawn that is under way answers 202; clients follow .../server/progress.
c.JupyterHub.tornado_settings.update({"slow_spawn_timeout": 0.3})  # merges with a site's own settings
# Every spawn outlasts those 0.3 s: the hub's "is slow to start" warning goes to the debug log.
slow_spawn_warnings_as_debug()

c.JupyterHub.spawner_class = "rcsc3"
# The lab's node is this machine: the server listens on loopback only.
c.RcSC3Spawner.ip = "127.0.0.1"
c.RcSC3Spawner.default_url = "/lab"
c.RcSC3Spawner.http_timeout = 60
c.RcSC3Spawner.start_timeout = 300
