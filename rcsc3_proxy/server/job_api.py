"""`GET <base_url>rcsc3/api/job`: the student's Slurm job and the time it has left, for pages and scripts.

    {"job_id": "123", "partition": "interactive", "nodes": ["gpu01"],
     "end_time": "2026-12-01T22:20:09Z", "seconds_left": 4321,
     "state": "RUNNING", "checked_at": "2026-12-01T21:08:05Z", "stale": false}

`end_time` is Slurm's EndTime (UTC), so an admin's `scontrol update ... TimeLimit=` shows within a
refresh (~30 s); `seconds_left` is counted at the request. `stale: true` (with `error`) says Slurm
did not answer the last refresh and the values are the last known. Errors are Jupyter's JSON
errors ({"message": ...}): 404 outside a Slurm job, 503 while Slurm has never answered.

Authenticated like the rest of the server's API (the hub's cookie with JupyterLab's XSRF header,
or `Authorization: token $JUPYTERHUB_API_TOKEN`). Polling it is not activity: a page open on the
time left must not keep an idle server from being culled.
"""

from __future__ import annotations

import json

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from .job_clock import JobClock

ROUTE = "rcsc3/api/job"
#: the web app setting that holds the server's JobClock
SETTING = "rcsc3_job_clock"


class JobHandler(APIHandler):
    auth_resource = "rcsc3"
    _track_activity = False  # see the module docstring

    @web.authenticated
    @authorized
    async def get(self) -> None:
        clock: JobClock | None = self.settings.get(SETTING)
        if clock is None or not clock.job_id:
            raise web.HTTPError(404, "this server does not run in a Slurm job (no SLURM_JOB_ID)")
        if await clock.known() is None:
            raise web.HTTPError(503, f"Slurm has not told job {clock.job_id}'s end yet: {clock.error or 'no answer'}")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(clock.snapshot()))
