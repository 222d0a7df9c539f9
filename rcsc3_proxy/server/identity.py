"""`GET <base_url>rcsc3/api/identity?challenge=C`: the server proves to the hub that it is this student's.

The hub takes a server as up only when it answers this with HMAC-SHA256(its API token,
"rcsc3-identity:<challenge>:<port>"), where the port is the one this server listens on. Only the
student's own server holds the token (the hub gave it to this job alone), and the answer reveals
nothing of it: a process of another user that got hold of the port (a squatter) cannot answer,
nor can it relay the challenge to the student's real server listening elsewhere, whose proof
would name another port. The hub's side is `rcsc3_spawner.server_identity`; both compute the
same `proof()`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

ROUTE = "rcsc3/api/identity"
#: the hub's challenges are 32 random bytes in hex; anything else is refused unread
CHALLENGE = re.compile(r"[0-9a-f]{64}")


def proof(token: str, challenge: str, port: int) -> str:
    """HMAC-SHA256 of the challenge and the listening port, keyed by the server's API token."""
    message = f"rcsc3-identity:{challenge}:{port}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


class IdentityHandler(JupyterHandler):
    """Answers the hub's challenge without login: the proof is the authentication."""

    @allow_unauthenticated
    def get(self) -> None:
        challenge = self.get_argument("challenge", "")
        if not CHALLENGE.fullmatch(challenge):
            raise web.HTTPError(400, "challenge: expected 64 lowercase hex digits")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        port = self.settings.get("rcsc3_listen_port")
        if not token or not port:
            raise web.HTTPError(503, "this server has no hub token or no known port to prove")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"proof": proof(token, challenge, port)}))
