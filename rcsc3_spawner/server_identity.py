"""Is the server that answers on the reported port really this student's? The hub's side of the check.

The job's server reports a port; before the hub routes the student there, it asks
`<base_url>rcsc3/api/identity?challenge=C` and expects HMAC-SHA256(the server's API token,
"rcsc3-identity:C:<port>") back (the node's side is `rcsc3_proxy.server.identity`). A process of
another user that holds the port cannot compute it, and a relay to the real server elsewhere gets
a proof naming the other port. The token itself never leaves the hub in this exchange.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

ROUTE = "rcsc3/api/identity"


def new_challenge() -> str:
    return secrets.token_hex(32)


def proof(token: str, challenge: str, port: int) -> str:
    """What the student's server answers (the same function as the node's)."""
    message = f"rcsc3-identity:{challenge}:{port}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Answer:
    """One try of the check: nothing answered yet, the student's server, or someone else."""

    answered: bool
    genuine: bool = False
    detail: str = ""


async def check(client: AsyncHTTPClient, url_base: str, token: str, port: int, timeout: float) -> Answer:
    """Ask the server at `url_base` (http://ip:port/user/name/) to prove it holds `token`."""
    challenge = new_challenge()
    request = HTTPRequest(f"{url_base}{ROUTE}?challenge={challenge}", connect_timeout=min(timeout, 2.0),
                          request_timeout=timeout, follow_redirects=False)
    try:
        response = await client.fetch(request, raise_error=True)
    except HTTPClientError as e:
        if e.code == 599:  # no HTTP answer: refused, reset or timed out
            return Answer(answered=False)
        return Answer(answered=True, detail=f"HTTP {e.code} instead of a proof")
    except OSError:
        return Answer(answered=False)
    try:
        given = json.loads(response.body)["proof"]
    except (ValueError, KeyError, TypeError):
        return Answer(answered=True, detail="an answer that is not a proof")
    if not isinstance(given, str) or not hmac.compare_digest(given, proof(token, challenge, port)):
        return Answer(answered=True, detail="a wrong proof")
    return Answer(answered=True, genuine=True)
