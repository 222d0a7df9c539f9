"""JupyterHub configuration for rcsc3 on a real Slurm cluster.

Install as /etc/rcsc3/jupyterhub_config.py and start the hub as the unprivileged
account `jupyterhub` (see docs/deploy.md):

    cd /var/lib/rcsc3/hub && /opt/rcsc3/venv/bin/jupyterhub -f /etc/rcsc3/jupyterhub_config.py

Site-specific values come from the RCSC3_* environment variables read in the
first block (put them in the systemd unit or the hub image's environment), so
this file can be used unchanged; every other setting is explained where it is set.
The demo configuration for one machine is ../jupyterhub_config.py.
"""

import os
import re
import socket

from rcsc3_spawner.course_groups import course_teacher_role
from rcsc3_spawner.hub_log import slow_spawn_warnings_as_debug
from rcsc3_spawner.hub_pages import TEMPLATE_PATH
from rcsc3_spawner.idle_culler import CULLER_ROLE, culler_service
from rcsc3_spawner.inherited_settings import check_config

c = get_config()  # noqa: F821  (provided by JupyterHub's config loader)


def env(name, default):
    """A site setting from the environment (empty means: use the default)."""
    return os.environ.get(name) or default


# ---------------------------------------------------------------- site settings
# Public URL where the configurable-http-proxy listens for students' browsers.
# https:// makes the proxy terminate TLS with RCSC3_SSL_CERT/RCSC3_SSL_KEY; use an
# http://127.0.0.1:8000 URL instead when a reverse proxy (nginx, haproxy) in front does TLS.
PUBLIC_BIND_URL = env("RCSC3_BIND_URL", "https://0.0.0.0:443")
SSL_CERT = env("RCSC3_SSL_CERT", "/etc/rcsc3/ssl/hub.crt")
SSL_KEY = env("RCSC3_SSL_KEY", "/etc/rcsc3/ssl/hub.key")
# The hub host's address on the cluster (compute) network: jobs on the GPU nodes call
# the hub API there (batchspawner-singleuser reports its port, the server checks tokens).
HUB_CLUSTER_ADDRESS = env("RCSC3_HUB_CONNECT_IP", socket.getfqdn())
# Interface the hub API listens on: the cluster-network address, or 0.0.0.0 for all.
HUB_API_IP = env("RCSC3_HUB_IP", "0.0.0.0")
HUB_API_PORT = int(env("RCSC3_HUB_PORT", "8081"))
# "pam" (local/LDAP/SSSD accounts on the hub host) or "generic-oauth" (Keycloak, ...).
AUTHENTICATOR = env("RCSC3_AUTHENTICATOR", "pam")
# Unix groups: who may log in and use the GPU partition, and who administers the hub.
# STUDENT_GROUP must be the group named in /etc/sudoers.d/rcsc3 (Runas %students).
STUDENT_GROUP = env("RCSC3_STUDENT_GROUP", "students")
# The courses: unix (LDAP) groups of their students, e.g. "viz2026,hpc2026"; each course's teachers are the
# members of "<course>-teachers" and get a role on the course's group only (docs/deploy.md, "Courses").
COURSES = [name.strip() for name in env("RCSC3_COURSES", "").split(",") if name.strip()]
ADMIN_GROUP = env("RCSC3_ADMIN_GROUP", "teachers")
# Where the hub keeps its database and cookie secret (writable by the hub account only).
STATE_DIR = env("RCSC3_STATE_DIR", "/var/lib/rcsc3/hub")
# The Python environment with rcsc3 and JupyterLab on the GPU nodes (same path on every node).
NODE_VENV = env("RCSC3_NODE_VENV", "/opt/rcsc3/venv")
# Slurm account the jobs are charged to ("" = the student's default account).
SLURM_ACCOUNT = env("RCSC3_SLURM_ACCOUNT", "")
# One origin per student (strongly recommended): e.g. "https://jupyter.example.edu" puts each student's
# server on https://<name>.jupyter.example.edu (wildcard DNS and certificate; docs/deploy.md,
# "One origin per student"). Empty: every server is a path on the hub's one origin.
SUBDOMAIN_HOST = env("RCSC3_SUBDOMAIN_HOST", "")

# ---------------------------------------------------------------- the public side
# Where the proxy listens for browsers.
c.JupyterHub.bind_url = PUBLIC_BIND_URL
if SUBDOMAIN_HOST:
    # Each student's server on an origin of its own: a page one student serves cannot script
    # another's server or desktop (on one shared origin it could open theirs in a window and do so).
    c.JupyterHub.subdomain_host = SUBDOMAIN_HOST
if PUBLIC_BIND_URL.startswith("https:"):
    # TLS certificate and key for the public URL (readable by the hub account).
    c.JupyterHub.ssl_cert = SSL_CERT
    c.JupyterHub.ssl_key = SSL_KEY
# The hub starts configurable-http-proxy itself (installed from npm, on PATH).
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.command = ["configurable-http-proxy"]
# The hub's own SQLite database and cookie secret live in the state directory.
c.JupyterHub.db_url = f"sqlite:///{STATE_DIR}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{STATE_DIR}/jupyterhub_cookie_secret"

# ---------------------------------------------------------------- the cluster side
# The hub API must be reachable from the GPU nodes (TCP HUB_API_PORT, nodes -> hub).
c.JupyterHub.hub_ip = HUB_API_IP
c.JupyterHub.hub_port = HUB_API_PORT
# The address jobs use to reach the hub API (never 127.0.0.1 on a real cluster).
c.JupyterHub.hub_connect_ip = HUB_CLUSTER_ADDRESS
# Students' servers are Slurm jobs: a hub restart or upgrade must not cancel them.
c.JupyterHub.cleanup_servers = False
# Internal TLS between hub, proxy and servers stays off: rcsc3 0.1.0 does not hand the
# per-user certificates to the jobs (no Spawner.move_certs), so a job could not read them.
# Keep the hub API and the nodes on a private cluster network instead (docs/deploy.md).
c.JupyterHub.internal_ssl = False

# ---------------------------------------------------------------- who may log in
if AUTHENTICATOR == "pam":
    # Accounts of the hub host (local, LDAP or SSSD): the same accounts Slurm runs jobs as. rcsc3's
    # PAM login also makes the user's course groups (RCSC3_COURSES and their -teachers) JupyterHub groups.
    c.JupyterHub.authenticator_class = "rcsc3-pam"
    c.CourseGroupsPAMAuthenticator.course_groups = "|".join(
        [re.escape(course) + "(-teachers)?" for course in COURSES]) or "(?!)"
    # Members of the student group may log in; members of the admin group are hub admins.
    c.PAMAuthenticator.allowed_groups = {STUDENT_GROUP}
    c.PAMAuthenticator.admin_groups = {ADMIN_GROUP}
    # A non-root hub cannot open PAM sessions for other users; it only authenticates.
    c.PAMAuthenticator.open_sessions = False
elif AUTHENTICATOR == "generic-oauth":
    # Single sign-on through an OAuth2/OIDC provider (pip install oauthenticator).
    c.JupyterHub.authenticator_class = "generic-oauth"
    # The client registered for the hub at the provider.
    c.GenericOAuthenticator.client_id = env("RCSC3_OAUTH_CLIENT_ID", "rcsc3-hub")
    c.GenericOAuthenticator.client_secret = env("RCSC3_OAUTH_CLIENT_SECRET", "")
    # Where the provider sends the browser back: <public URL>/hub/oauth_callback.
    c.GenericOAuthenticator.oauth_callback_url = env(
        "RCSC3_OAUTH_CALLBACK_URL", "https://jupyter.example.edu/hub/oauth_callback"
    )
    # The provider's endpoints (the values below are Keycloak's layout).
    issuer = env("RCSC3_OAUTH_ISSUER", "https://sso.example.edu/realms/cluster")
    c.GenericOAuthenticator.authorize_url = f"{issuer}/protocol/openid-connect/auth"
    c.GenericOAuthenticator.token_url = f"{issuer}/protocol/openid-connect/token"
    c.GenericOAuthenticator.userdata_url = f"{issuer}/protocol/openid-connect/userinfo"
    c.GenericOAuthenticator.scope = ["openid", "profile", "groups"]
    # The hub user name must BE the unix account name: jobs are submitted as that account.
    c.GenericOAuthenticator.username_claim = "preferred_username"
    # Group membership from the provider's "groups" claim decides who may log in / administer
    # (oauthenticator >= 17 wants manage_groups on, set before the group settings).
    c.GenericOAuthenticator.manage_groups = True
    c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.groups"
    c.GenericOAuthenticator.allowed_groups = {STUDENT_GROUP}
    c.GenericOAuthenticator.admin_groups = {ADMIN_GROUP}
else:
    raise ValueError(f"RCSC3_AUTHENTICATOR={AUTHENTICATOR!r}: use 'pam' or 'generic-oauth'")

# One default server per student, plus one named server (e.g. a second, CPU-only session).
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 2
# Spawns the hub handles at once (sbatch calls); more wait with "too many users starting".
c.JupyterHub.concurrent_spawn_limit = 50
# The spawn page right after "Start". By default the hub holds the form's answer for a second
# (an API spawn's for up to 10 s) in case the server is up by then, which a Slurm job never is.
# Within 0.3 s bad options are refused (the form again, or 400 from the REST API) and so,
# normally, is a job sbatch refuses; later errors show on the spawn page (progress events).
# An API spawn that is under way answers 202; clients follow .../server/progress.
c.JupyterHub.tornado_settings.update({"slow_spawn_timeout": 0.3})  # merges with a site's own settings
# Every spawn outlasts those 0.3 s: the hub's "is slow to start" warning goes to the debug log.
slow_spawn_warnings_as_debug()

# ---------------------------------------------------------------- the spawner
# RcSC3Spawner (entry point "rcsc3"): each server is a Slurm job on the GPU partition.
c.JupyterHub.spawner_class = "rcsc3"
# The profiles offered on the spawn form; bounds are clipped to what Slurm reports.
c.RcSC3Spawner.profiles = [
    {
        "slug": "gpu-desktop",
        "display_name": "GPU desktop — interactive partition, 1 GPU",
        "description": "JupyterLab, a remote Linux desktop with VirtualGL, and ipyparallel engines",
        "partition": "interactive",
        "gpus": {"default": 1, "min": 1, "max": 2},
        "cpus": {"default": 4, "min": 1, "max": 12},
        "memory_gb": {"default": 8, "min": 2, "max": 32},
        "walltime": {"default": "2:00", "min": "0:15", "max": "6:00"},
        "account": SLURM_ACCOUNT,
        "prestart_desktop": True,
    },
    {
        "slug": "cpu",
        "display_name": "CPU only — JupyterLab and ipyparallel engines",
        "partition": "interactive",
        "gpus": 0,
        "cpus": {"default": 2, "min": 1, "max": 12},
        "memory_gb": {"default": 4, "min": 1, "max": 32},
        "walltime": {"default": "2:00", "min": "0:15", "max": "6:00"},
        "account": SLURM_ACCOUNT,
        "prestart_desktop": False,
    },
]
# rcsc3, JupyterLab and ipyparallel on the nodes, by absolute path (sudo and Slurm drop PATH).
c.RcSC3Spawner.node_venv = NODE_VENV
# How the hub (not root) runs sbatch/scancel/tail as the student: /etc/sudoers.d/rcsc3, which
# keeps exactly the job's variables (env_keep); no -E, no SETENV.
c.RcSC3Spawner.submit_prefix = ["sudo", "-u", "{username}", "--"]
# The job's output file, readable by the student (and by the hub through sudo tail).
c.RcSC3Spawner.job_log_template = "{homedir}/.rcsc3/logs/jupyter-%j.log"
# Shell lines run in the job before the server starts, e.g. "module load cuda".
c.RcSC3Spawner.job_prologue = ""
# One squeue for all students every 30 s while idle; 1 s while servers start or stop.
c.RcSC3Spawner.slurm_poll_interval = 30.0
c.RcSC3Spawner.slurm_fast_poll_interval = 1.0
# How long a job may wait in the queue before the spawn is cancelled with Slurm's reason.
c.RcSC3Spawner.pending_timeout = 600.0
# How long a running job's server may take to answer (first start on a cold node is slow).
c.RcSC3Spawner.server_up_timeout = 180.0
# Seconds between SIGTERM to the server and SIGKILL of the whole job when a student stops it.
c.RcSC3Spawner.stop_grace_period = 2.0
# How many lines of the job's log the student sees when a spawn fails.
c.RcSC3Spawner.log_tail_lines = 30
# The whole spawn (queue wait included) must finish within this many seconds.
c.RcSC3Spawner.start_timeout = 900
# Seconds to wait for the server's first HTTP answer after the port was reported.
c.RcSC3Spawner.http_timeout = 120
# Where the server listens: "" = at its node's address as Slurm knows it (NodeAddr), which is where the
# hub and the proxy reach it, and nowhere else (not on every interface of the node).
c.RcSC3Spawner.ip = ""
# Students land in JupyterLab.
c.RcSC3Spawner.default_url = "/lab"

# ---------------------------------------------------------------- courses, idle servers, pages
# A course's teachers see, start, stop and open their course's servers (admin page and REST API).
c.JupyterHub.load_roles = [course_teacher_role(course) for course in COURSES]
# Servers idle longer than their profile's idle_timeout (default 30 min) are stopped and their GPU
# freed (jupyterhub-idle-culler as a hub-managed service). Idle means what the student's server
# reports: API use, running kernels, input in the desktop; the proxy's own byte count is off (it
# would count an open desktop tab's pictures as activity).
c.JupyterHub.last_activity_interval = 0
c.JupyterHub.services = [culler_service(c.RcSC3Spawner.profiles)]
c.JupyterHub.load_roles.append(CULLER_ROLE)
# rcsc3's additions to the hub's home and "not running" pages: the time left, why a server stopped.
c.JupyterHub.template_paths = [TEMPLATE_PATH]

# Last: stop the hub if a setting above is one RcSC3Spawner would ignore (batchspawner's req_*,
# batch_script, exec_prefix, ...) or a profile is malformed; the message names what to use instead.
check_config(c)
