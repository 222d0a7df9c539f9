"""A safe replacement for batchspawner's `/hub/api/batchspawner` handler.

The job's server reports its port to the hub with its own API token. Stock
batchspawner copies *every* key of that POST onto the spawner with setattr, so a
student holding the token (it is in their job's environment) could rewrite
`exec_prefix` or `batch_submit_cmd` and have the hub run it. This handler
accepts exactly one key, an integer `port`, and tells the waiting spawner.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers import APIHandler, default_handlers
from tornado import web

ROUTE = r"/api/batchspawner"


class PortReportHandler(APIHandler):
    @web.authenticated
    def post(self) -> None:
        user = self.current_user
        token = self.get_auth_token()
        spawner = next((s for s in getattr(user, "spawners", {}).values() if s.api_token and s.api_token == token), None)
        if spawner is None:
            raise web.HTTPError(403, "only a server's own token may report its port")
        data = self.get_json_body()
        if not isinstance(data, dict) or set(data) != {"port"}:
            raise web.HTTPError(400, "expected exactly {\"port\": <1-65535>}")
        port = data["port"]
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise web.HTTPError(400, "port: expected a whole number from 1 to 65535")
        report = getattr(spawner, "report_port", None)
        if report is not None:
            report(port)
        else:
            # A plain batchspawner spawner on the same hub: the port is all it needs.
            spawner.port = port
        self.set_status(201)
        self.finish(json.dumps({"message": "port recorded"}))


def install() -> None:
    """Put our handler in place of batchspawner's (importing batchspawner registers its own)."""
    import batchspawner.api  # noqa: F401  (make sure its registration has happened first)

    default_handlers[:] = [h for h in default_handlers if h[0] != ROUTE]
    default_handlers.append((ROUTE, PortReportHandler))
