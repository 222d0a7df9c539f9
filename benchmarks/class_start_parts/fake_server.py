#!/usr/bin/env python3
"""A light-weight stand-in for the student's Jupyter server, for benchmarks/class_start.py's 100 users.

RcSC3Spawner runs it in the job in place of rcsc3-singleuser (`c.RcSC3Spawner.singleuser_launcher`
= this file's absolute path; the job puts the node venv's bin/ first on PATH, so `python3` is the
venv's). It does what the hub needs of a server and nothing else, so that 100 of them start on
2 cores and the hub and its shared squeue poller are what the benchmark measures:

- it binds and listens on its port first and reports it to the hub exactly as rcsc3-singleuser
  does (`rcsc3_proxy.singleuser`'s listen_socket, node_address and report_port: POST {"port": N}
  to the hub's /api/batchspawner with the job's JUPYTERHUB_API_TOKEN);
- it answers the hub's identity check, `<prefix>rcsc3/api/identity?challenge=C`, with
  HMAC-SHA256(JUPYTERHUB_API_TOKEN, "rcsc3-identity:C:<port>"), the proof
  rcsc3_proxy/server/identity.py computes (that module imports jupyter_server, which is what this
  server must not load);
- `<prefix>api/status` and `<prefix>` answer 200 with a small JSON body (the benchmark's "the
  server answers through the proxy", the hub's own wait_up); anything else is a 404.

The arguments (the jupyterhub-singleuser command line RcSC3Spawner appends) are ignored. SIGTERM
(scancel) ends it at once, as Python's default.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from rcsc3_proxy.singleuser import PortReportError, listen_socket, node_address, report_port

CHALLENGE = re.compile(r"[0-9a-f]{64}")
STARTED = time.time()


def proof(token: str, challenge: str, port: int) -> str:
    """rcsc3's identity proof: HMAC-SHA256 of the challenge and the listening port, keyed by the token."""
    return hmac.new(token.encode(), f"rcsc3-identity:{challenge}:{port}".encode(), hashlib.sha256).hexdigest()


class Handler(BaseHTTPRequestHandler):
    server_version = "rcsc3-class-start-fake/1"
    prefix = "/"
    token = ""
    port = 0

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        url = urlparse(self.path)
        if url.path == f"{self.prefix}rcsc3/api/identity":
            challenge = parse_qs(url.query).get("challenge", [""])[0]
            if not CHALLENGE.fullmatch(challenge):
                self._json(400, {"message": "challenge: expected 64 lowercase hex digits"})
                return
            self._json(200, {"proof": proof(self.token, challenge, self.port)})
        elif url.path in (self.prefix, f"{self.prefix}api", f"{self.prefix}api/status"):
            self._json(200, {"fake": True, "started": STARTED})
        else:
            self._json(404, {"message": "not a route of the fake server"})

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (http.server's signature)
        pass  # the job log stays small: one line at start


def main() -> int:
    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        print("fake_server: JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be set (the hub's job sets them)",
              file=sys.stderr)
        return 2
    host = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).hostname or node_address()
    try:
        sock = listen_socket(host)
    except OSError as e:
        print(f"fake_server: cannot listen on {host or 'any address'}: {e}", file=sys.stderr)
        return 1
    sock.setblocking(True)  # listen_socket hands asyncio a non-blocking one; socketserver blocks
    port = sock.getsockname()[1]
    Handler.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    Handler.token = token
    Handler.port = port
    server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock  # serve on the socket that was listening before the report
    try:
        report_port(port, api_url, token)
    except PortReportError as e:
        print(f"fake_server: {e}", file=sys.stderr)
        return 1
    print(f"fake_server: port {port} on {host or 'every interface'} reported, serving {Handler.prefix}",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
