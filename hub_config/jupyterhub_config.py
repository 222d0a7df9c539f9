"""JupyterHub configuration for the rcsc3 demo: `make demo` on one machine.

The hub, the proxy and the one-host Slurm "lab" (`rcsc3 lab up`) all run here.
For a real cluster start from production/jupyterhub_config.py instead.
"""

import os

from rcsc3_spawner.course_groups import course_teacher_role
from rcsc3_spawner.hub_log import slow_spawn_warnings_as_debug
from rcsc3_spawner.hub_pages import TEMPLATE_PATH
from rcsc3_spawner.idle_culler import CULLER_ROLE, culler_service
from rcsc3_spawner.inherited_settings import check_config
from rcsc3_spawner.profiles import DEFAULT_PROFILES

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

# Local unix accounts (PAM): student1..3 and teacher made by `rcsc3 lab users`. Their course
# groups come from their unix groups at each login (viz2026: student1, student2; hpc2026: student3;
# viz2026-teachers: teacher). Nobody is the hub's admin: the teacher has their course's role.
c.JupyterHub.authenticator_class = "rcsc3-pam"
c.Authenticator.allowed_users = {f"student{i}" for i in range(1, 4)} | {"teacher"}
c.JupyterHub.allow_named_servers = True
# A course's teacher sees, starts, stops and opens their course's servers, nobody else's.
c.JupyterHub.load_roles = [course_teacher_role(course) for course in ("viz2026", "hpc2026")]


def landing_page(handler):
    """Teachers land on the admin page (their course's servers); students on their server."""
    user = handler.current_user
    if user is not None and any(g.name.endswith("-teachers") for g in user.groups):
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
# The lab's partitions (rcsc3 lab up): the GPU desktop and CPU-only profiles for everyone, and a
# course profile only viz2026's students see (others get a 403 naming the profile if they ask).
c.RcSC3Spawner.profiles = [
    *DEFAULT_PROFILES,
    {
        "slug": "viz2026-lab",
        "display_name": "viz2026 lab session — GPU desktop, 1 GPU",
        "description": "For the students of viz2026: JupyterLab and a Remote Desktop on the GPU.",
        "partition": "interactive",
        "gpus": 1,
        "cpus": {"default": 2, "min": 1, "max": 4},
        "memory_gb": {"default": 4, "min": 1, "max": 16},
        "walltime": {"default": "1:30", "min": "0:15", "max": "3:00"},
        "prestart_desktop": True,
        "groups": ["viz2026"],
        "idle_timeout": 15 * 60,
    },
]
# Servers idle longer than their profile's idle_timeout are stopped and their GPU goes back to the
# class (jupyterhub-idle-culler as a hub-managed service). Idle means what the student's server
# reports: the proxy's own count of bytes (an open desktop tab's pictures too) is off.
c.JupyterHub.last_activity_interval = 0
c.JupyterHub.services = [culler_service(c.RcSC3Spawner.profiles)]
c.JupyterHub.load_roles.append(CULLER_ROLE)
# rcsc3's additions to the hub's home and "not running" pages: the time left, why a server stopped
c.JupyterHub.template_paths = [TEMPLATE_PATH]
# The lab's node is this machine: the server listens on loopback only.
c.RcSC3Spawner.ip = "127.0.0.1"
c.RcSC3Spawner.default_url = "/lab"
c.RcSC3Spawner.http_timeout = 60
c.RcSC3Spawner.start_timeout = 300

# Last: stop the hub if a setting above is one RcSC3Spawner would ignore (batchspawner's req_*,
# batch_script, exec_prefix, ...) or a profile is malformed; the message names what to use instead.
check_config(c)
