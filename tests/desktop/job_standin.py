"""A stand-in for rcsc3's job API in the desktop's page tests: `GET <base_url>rcsc3/api/job`.

rcsc3-singleuser serves the real one inside a Slurm job (rcsc3_proxy/server/job_api.py, tested
there and, with the desktop page, in tests/e2e/test_desktop_sharing.py). The desktop tests' plain
servers run in no job, and the page's warnings come at 10 and 2 minutes before a job's end, which a
test cannot wait for: this serves the same contract, with the end the test writes to the file
named by RCSC3_TEST_JOB_END (a Unix time). Like JupyterHub's, it refuses a cookie-authenticated
GET without the XSRF header the page must send (tornado's check_xsrf_cookie).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web


class JobStandIn(APIHandler):
    _track_activity = False

    @web.authenticated
    def get(self) -> None:
        self.check_xsrf_cookie()  # explicitly, for GET too, as JupyterHub does for fetch()
        end = float(Path(os.environ["RCSC3_TEST_JOB_END"]).read_text())
        self.finish({"job_id": "4242", "partition": "interactive", "nodes": ["lab"],
                     "end_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)),
                     "seconds_left": max(0, round(end - time.time()))})


def _load_jupyter_server_extension(app) -> None:
    app.web_app.add_handlers(".*", [(url_path_join(app.base_url, "rcsc3", "api", "job"), JobStandIn)])


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "job_standin"}]
