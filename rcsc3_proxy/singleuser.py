"""`rcsc3-singleuser`: start the student's Jupyter server inside the Slurm job, fast.

It does what `batchspawner-singleuser` does (pick a free port, tell the hub, run
`jupyterhub-singleuser` in this process) with two differences that matter to a student
waiting on the spawn page:

* The port is reported with the standard library before anything heavy is imported, so
  the hub knows where to look about two seconds sooner.
* Two import-time costs that buy a Jupyter server nothing are skipped (measured on the lab
  node, 2 cores; together about 3 of the 5 seconds the server needs to listen):

  - `jsonschema` eagerly imports `rfc3987_syntax`, which compiles ~35 Lark Earley parsers
    (2.3 s) for the `iri` / `iri-reference` formats. No Jupyter schema uses those formats
    (python-jsonschema/jsonschema#1428, jupyter-server/jupyter_server#1559). Blocking the
    module makes jsonschema skip those two format checks, as it does when the optional
    package is not installed.
  - `jupyterlab.labapp` runs `node yarn.js config` at import time (0.7 s) when node is on
    PATH, only to learn an npm registry for building extensions, which a student's server
    never does. The import runs with node hidden from PATH; the server itself keeps the
    job's real PATH.

With prestart on, it also starts the Remote Desktop before those imports (see prestart.py).

`RCSC3_SINGLEUSER_FAST=0` turns all three off. This module is node side: it imports nothing of
the hub package.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from runpy import run_path
from shutil import which
from urllib.parse import urlparse, urlunparse

PORT_REPORT_ATTEMPTS = 5
SLOW_OPTIONAL_MODULES = ("rfc3987_syntax",)


class PortReportError(RuntimeError):
    """The hub could not be told which port the server listens on."""


def free_port() -> int:
    """A TCP port that is free right now (the same way JupyterHub's random_port finds one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _ssl_context() -> ssl.SSLContext | None:
    """The client context for JupyterHub's internal SSL, when the hub set it up."""
    certfile = os.environ.get("JUPYTERHUB_SSL_CERTFILE")
    keyfile = os.environ.get("JUPYTERHUB_SSL_KEYFILE")
    client_ca = os.environ.get("JUPYTERHUB_SSL_CLIENT_CA")
    if not (certfile and keyfile) and not client_ca:
        return None
    context = ssl.create_default_context(cafile=client_ca or None)
    if certfile and keyfile:
        context.load_cert_chain(certfile, keyfile)
    return context


def report_port(port: int, api_url: str, token: str, *, attempts: int = PORT_REPORT_ATTEMPTS) -> None:
    """POST {"port": port} to the hub's /api/batchspawner with the server's own token.

    Retries briefly on connection errors (a hub restarting behind its proxy); an HTTP
    error is final, since the hub has looked at the request and said no.
    """
    url = api_url.rstrip("/") + "/batchspawner"
    body = json.dumps({"port": port}).encode()
    context = _ssl_context()
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=context):
                return
        except urllib.error.HTTPError as e:
            raise PortReportError(f"the hub at {url} refused the port report: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            if attempt == attempts:
                raise PortReportError(f"the hub at {url} could not be reached: {e}") from None
            time.sleep(0.5 * attempt)


def with_port(service_url: str, port: int) -> str:
    """JUPYTERHUB_SERVICE_URL with its port replaced by ours."""
    url = urlparse(service_url)
    return urlunparse(url._replace(netloc=f"{url.hostname}:{port}"))


def block_slow_optional_modules() -> None:
    """Make `import rfc3987_syntax` raise ImportError (a None entry in sys.modules does that)."""
    for name in SLOW_OPTIONAL_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


@contextmanager
def path_without(program: str) -> Iterator[None]:
    """Hide the PATH directories that hold `program` for the duration of the block."""
    original = os.environ.get("PATH", "")
    kept = [d for d in original.split(os.pathsep) if d and not os.access(os.path.join(d, program), os.X_OK)]
    os.environ["PATH"] = os.pathsep.join(kept)
    try:
        yield
    finally:
        os.environ["PATH"] = original


def preimport_jupyterlab() -> None:
    """Import jupyterlab.labapp without its import-time `node yarn.js config` call."""
    with path_without("node"):
        try:
            import jupyterlab.labapp  # noqa: F401
        except ImportError:
            pass  # a server without JupyterLab: nothing to speed up


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # `rcsc3-singleuser [COMMAND] [SERVER ARGS...]`: COMMAND defaults to jupyterhub-singleuser
    if not args or args[0].startswith("-"):
        args.insert(0, "jupyterhub-singleuser")
    command, server_args = args[0], args[1:]

    api_url = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api_url or not token:
        print("rcsc3-singleuser: JUPYTERHUB_API_URL and JUPYTERHUB_API_TOKEN must be set (it is started by the hub's"
              " batch job)", file=sys.stderr)
        return 2
    port = free_port()
    try:
        report_port(port, api_url, token)
    except PortReportError as e:
        print(f"rcsc3-singleuser: {e}", file=sys.stderr)
        return 1
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    if service_url:
        os.environ["JUPYTERHUB_SERVICE_URL"] = with_port(service_url, port)
    else:
        server_args.append(f"--port={port}")
    print(f"rcsc3-singleuser: port {port} reported to the hub, starting {command}", file=sys.stderr, flush=True)

    if os.environ.get("RCSC3_SINGLEUSER_FAST", "1") != "0":
        # the desktop (prestart profiles) boots on the other cores while this process imports
        from .prestart import start_desktop_early

        if start_desktop_early():
            print("rcsc3-singleuser: Remote Desktop starting alongside the server (prestart)", file=sys.stderr, flush=True)
        block_slow_optional_modules()
        preimport_jupyterlab()

    sys.argv = [command, *server_args]
    if os.path.basename(command) == "jupyterhub-singleuser":
        from jupyterhub.singleuser import main as singleuser_main

        return singleuser_main() or 0
    path = command if os.path.isabs(command) else which(command)
    if path is None:
        print(f"rcsc3-singleuser: {command!r} was not found on PATH", file=sys.stderr)
        return 127
    run_path(path, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
