"""Which requests may drive a student's desktop: only those made by that student's own desktop page.

Every student's server lives on the hub's one origin, so a page another student serves from
their own server (`/user/A/static/...`, any HTML their config puts there) runs script with the
same origin as `/user/B/desktop/`, and B's browser sends B's login cookie with its requests.
jupyter-server-proxy leaves XSRF checks to the proxied app (its `check_xsrf_cookie` is a no-op)
and the Origin check passes on the same origin. So rcsc3's routes check for themselves:

* the page (`desktop/`) is served only to a top-level navigation (`Sec-Fetch-Mode: navigate`,
  `Sec-Fetch-Dest: document`), never to `fetch()` or a frame, which could read the secret in it;
  it is never framed (`frame-ancestors 'none'`) and severs its opener (`Cross-Origin-Opener-Policy`);
* every API call (`desktop/api/*`) carries the page's per-desktop secret in a header, comes from
  the same origin and, from a browser, names the desktop page itself as its Referer;
* the VNC stream (`desktop-vnc/`) carries the secret as `desktop_token` in its URL.

What a shared origin still leaves open: a page of A that B opens can `window.open()` B's desktop
page and, if it sets a matching opener policy on its own server, script that window like its
own (same origin), secret included. Only one origin per user closes that:
`c.JupyterHub.subdomain_host` (docs/deploy.md, "One origin per student").

Browsers without Fetch Metadata (no `Sec-Fetch-*` headers) still need the secret.

The secret is per person, too: the page gives each person who may open it (the student; a
teacher or a classmate the hub gives access to the server) `page_token(secret, their name)`, and
every call and stream must carry the token of the person it is authenticated as. A viewer's own
token is therefore no use in a page of theirs that the student visits: the student's login would
need the student's token. Who is calling reaches the supervisor (another process) in
`USER_HEADER`, set by rcsc3's handler in the Jupyter server (a client's own is dropped) and
signed with the desktop's secret (`PROOF_HEADER`), which no browser ever sees.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import os
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit

#: the header the page's API calls carry the secret in
TOKEN_HEADER = "X-Rcsc3-Desktop-Token"
#: the query argument the page's websocket URL carries it in
TOKEN_ARGUMENT = "desktop_token"
#: who is calling, as the Jupyter server authenticated them (URL-quoted), on requests to the supervisor
USER_HEADER = "X-Rcsc3-Desktop-User"
#: `user_proof` of USER_HEADER's name: the Jupyter server set it, not a client
PROOF_HEADER = "X-Rcsc3-Desktop-User-Proof"
#: set on the desktop page
PAGE_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Referrer-Policy": "same-origin",
}


def page_path(env: Mapping[str, str] | None = None) -> str:
    """The desktop page's path on the hub's origin, e.g. /user/ana/desktop/."""
    env = os.environ if env is None else env
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX") or "/"
    return prefix.rstrip("/") + "/desktop/"


def owner(env: Mapping[str, str] | None = None) -> str:
    """Whose desktop this is: the server's JupyterHub user, else (a plain Jupyter server) the unix user."""
    env = os.environ if env is None else env
    return env.get("JUPYTERHUB_USER") or getpass.getuser()


def person(username: str | None, env: Mapping[str, str] | None = None) -> str:
    """Who an authenticated request comes from, for the desktop. Under JupyterHub: the hub user's
    name. A plain Jupyter server has only token holders, who all are the owner (its identity
    provider makes up a new anonymous name per token login, which says nothing of who it is)."""
    env = os.environ if env is None else env
    if env.get("JUPYTERHUB_USER"):
        return username or ""
    return owner(env)


def _mac(secret: str, purpose: str, name: str) -> str:
    digest = hmac.new(secret.encode(), f"rcsc3-desktop:{purpose}:{name}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def page_token(secret: str, name: str) -> str:
    """The token `name`'s desktop page carries: their API calls and their stream must show it."""
    return _mac(secret, "page", name)


def user_headers(secret: str, name: str) -> dict[str, str]:
    """What the Jupyter server adds to a request it passes to the supervisor: who it is from."""
    return {USER_HEADER: quote(name, safe=""), PROOF_HEADER: _mac(secret, "user", name)}


def proven_user(headers: Mapping[str, str], secret: str) -> str | None:
    """The name `user_headers` put on this request, or None if they are missing or not the server's."""
    quoted, proof = headers.get(USER_HEADER), headers.get(PROOF_HEADER)
    if quoted is None or proof is None:
        return None
    name = unquote(quoted)
    return name if _same_secret(proof, _mac(secret, "user", name)) else None


def _same_secret(given: str | None, secret: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), secret.encode())


def _cross_site(headers: Mapping[str, str]) -> str:
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return f"it came from another site (Sec-Fetch-Site: {site})"
    return ""


def refuse_page(headers: Mapping[str, str]) -> str:
    """Why the desktop page must not be served for this request ('' when it may be)."""
    mode, dest = headers.get("Sec-Fetch-Mode"), headers.get("Sec-Fetch-Dest")
    if mode is not None and mode != "navigate":
        return f"the desktop page opens only as a page of its own, not by script (Sec-Fetch-Mode: {mode})"
    if dest is not None and dest != "document":
        return f"the desktop page opens only as a page of its own, not inside another (Sec-Fetch-Dest: {dest})"
    return ""


def refuse_api(headers: Mapping[str, str], secret: str, page: str) -> str:
    """Why a desktop API call is refused ('' when it is the desktop page's own)."""
    if not _same_secret(headers.get(TOKEN_HEADER), secret):
        return f"missing or wrong {TOKEN_HEADER}: only the desktop page itself may use this API"
    cross = _cross_site(headers)
    if cross:
        return cross
    referer = headers.get("Referer")
    if referer is not None and urlsplit(referer).path != page:
        return f"it was not sent by the desktop page {page}"
    if referer is None and "Sec-Fetch-Site" in headers:
        return "a browser sent it without naming the page it came from (Referer)"
    return ""


def refuse_stream(headers: Mapping[str, str], given_token: str | None, secret: str) -> str:
    """Why the VNC websocket is refused ('' when the desktop page opened it)."""
    if not _same_secret(given_token, secret):
        return f"missing or wrong {TOKEN_ARGUMENT}: only the desktop page itself may open the desktop's stream"
    return _cross_site(headers)
