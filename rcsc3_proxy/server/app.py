"""The Jupyter server as rcsc3-singleuser runs it: on a socket bound before the hub heard of the port.

jupyter_server binds its port itself, after its imports, and `jupyterhub-singleuser` only
learns the port from the hub's JUPYTERHUB_SERVICE_URL; batchspawner's way (pick a free port, close
it, report it, start the server) leaves the port free for seconds, and another user on the node who
binds it in that window owns the student's route. rcsc3-singleuser binds and listens first, reports
the port, and the server below serves on exactly that socket.

The hand-over overrides two private ServerApp methods (`_find_http_port`, `_bind_http_server_tcp`):
jupyter_server has no public way to serve on a given socket. setup.cfg pins jupyter_server's major
version, and tests/hub/test_singleuser_launcher.py fails if either method goes away or this server
stops serving on the socket it was given.
"""

from __future__ import annotations

import socket
from typing import ClassVar

from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import url_path_join
from jupyterhub.singleuser.extension import JupyterHubSingleUser

from .activity import watch_busy_kernels
from .identity import ROUTE as IDENTITY_ROUTE
from .identity import IdentityHandler
from .job_api import ROUTE as JOB_ROUTE
from .job_api import SETTING as JOB_CLOCK_SETTING
from .job_api import JobHandler
from .job_clock import JobClock


class PreboundServerApp(ServerApp):
    """A ServerApp that serves on `prebound` (a listening TCP socket) instead of binding a port."""

    #: set by rcsc3-singleuser before the server starts
    prebound: ClassVar[socket.socket | None] = None

    def _find_http_port(self) -> None:
        if self.prebound is None:
            super()._find_http_port()
            return
        self.port = self.prebound.getsockname()[1]

    def _bind_http_server_tcp(self) -> bool:
        if self.prebound is None:
            return super()._bind_http_server_tcp()
        self.http_server.add_sockets([self.prebound])
        return True

    def init_webapp(self) -> None:
        super().init_webapp()
        # Added here rather than as a server extension: a student's own config can disable
        # extensions, and this route is how the hub knows the server is theirs.
        port = self.prebound.getsockname()[1] if self.prebound is not None else self.port
        self.web_app.settings["rcsc3_listen_port"] = port
        # The job's end as Slurm tells it (rcsc3/api/job), and the job-log warnings before it: the
        # clock's loop starts with the event loop, and does nothing outside a Slurm job.
        clock = JobClock(parent=self, log=self.log)
        self.web_app.settings[JOB_CLOCK_SETTING] = clock
        self.io_loop.add_callback(clock.start)
        # a kernel that computes silently is activity too (the idle culler reads the server's activity)
        self.io_loop.add_callback(watch_busy_kernels, self.web_app, self.kernel_manager)
        self.web_app.add_handlers(".*", [
            (url_path_join(self.base_url, IDENTITY_ROUTE), IdentityHandler),
            (url_path_join(self.base_url, JOB_ROUTE), JobHandler),
        ])


class RcSC3SingleUser(JupyterHubSingleUser):
    """JupyterHub's single-user extension, started on a PreboundServerApp."""

    serverapp_class = PreboundServerApp

    @classmethod
    def get_extension_package(cls) -> str:
        # the extension the server loads is JupyterHub's own (this class only picks the ServerApp)
        return "jupyterhub"


def serve(sock: socket.socket, argv: list[str]) -> int:
    """Run jupyterhub-singleuser's server on `sock` until it stops."""
    PreboundServerApp.prebound = sock
    RcSC3SingleUser.launch_instance(argv)
    return 0
