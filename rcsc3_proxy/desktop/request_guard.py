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
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

#: the header the page's API calls carry the secret in
TOKEN_HEADER = "X-Rcsc3-Desktop-Token"
#: the query argument the page's websocket URL carries it in
TOKEN_ARGUMENT = "desktop_token"
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
