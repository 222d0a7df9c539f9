"""`rcsc3-singleuser`: start the student's Jupyter server inside the Slurm job, fast and unsquattable.

It does what `batchspawner-singleuser` does (tell the hub the server's port, run
`jupyterhub-singleuser` in this process) with three differences:

* The port is bound and listening *before* it is reported, and the Jupyter server serves on
  that very socket (`server/app.py`). batchspawner picks a free port, closes it, reports it and
  starts the server, which binds it seconds later: another user on the node who binds the port
  in that window (the report is visible in /proc/net/tcp) owns the student's route. Here there
  is no such moment, and the hub also checks that whoever answers holds this server's token
  (`server/identity.py`).
* The socket listens where the hub reaches the server, and only there: the spawner's `ip` if
  it set one, else this node's address as Slurm knows it (NodeAddr), not every interface.
* The port is reported with the standard library before anything heavy is imported, so
  the hub knows where to look about two seconds sooner; two import-time costs that buy a
  Jupyter server nothing are skipped (measured on the lab node, 2 cores; together about 3 of
  the 5 seconds the server needs to listen):

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

`RCSC3_SINGLEUSER_FAST=0` turns the import shortcuts and the early desktop off. This module is
node side: it imports nothing of the hub package.
"""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
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


def node_address(env: dict[str, str] | None = None) -> str:
    """This node's address as Slurm knows it (its NodeAddr, resolved), where the hub connects.

    The hub reaches a server at the NodeAddr `scontrol show node` gives for the job's node; the
    server listens there too. Falls back to the address the node's hostname resolves to, and to
    "" (every interface) when neither can be found.
    """
    env = os.environ if env is None else env
    name = env.get("SLURMD_NODENAME", "")
    addr = ""
    if name:
        try:
            res = subprocess.run(["scontrol", "show", "node", "-o", name], capture_output=True, text=True,
                                 timeout=10, stdin=subprocess.DEVNULL, check=False)
            m = re.search(r"\bNodeAddr=(\S+)", res.stdout)
            addr = m.group(1) if m else ""
        except (OSError, subprocess.TimeoutExpired):
            addr = ""
    for candidate in (addr, name, socket.gethostname()):
        if not candidate:
            continue
        try:
            return socket.getaddrinfo(candidate, None, type=socket.SOCK_STREAM)[0][4][0]
        except OSError:
            continue
    return ""


def listen_socket(host: str) -> socket.socket:
    """A TCP socket bound to a free port of `host` ("" = every interface) and already listening.

    No SO_REUSEPORT: with it another process of the same user could share the port; without it
    nobody else can bind it while this socket lives.
    """
    if host:
        family, _, _, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    else:
        family, address = (socket.AF_INET6, ("::", 0)) if socket.has_ipv6 else (socket.AF_INET, ("", 0))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not host:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def uses_singleuser_extension(env: dict[str, str] | None = None) -> bool:
    """Whether jupyterhub-singleuser would run as a jupyter_server extension (its default with
    jupyter_server 2); only then can the server be handed the bound socket."""
    env = os.environ if env is None else env
    if env.get("JUPYTERHUB_SINGLEUSER_EXTENSION", "") == "0":
        return False
    return env.get("JUPYTERHUB_SINGLEUSER_APP", "").replace("-", "_") in (
        "", "jupyter_server", "extension", "jupyter_server.serverapp.ServerApp")


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


def with_address(service_url: str, host: str, port: int) -> str:
    """JUPYTERHUB_SERVICE_URL with its host and port replaced by where the server listens."""
    url = urlparse(service_url)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunparse(url._replace(netloc=netloc))


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
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    host = urlparse(service_url).hostname or node_address()
    try:
        sock = listen_socket(host)
    except OSError as e:
        print(f"rcsc3-singleuser: cannot listen on {host or 'any address'}: {e}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    try:
        report_port(port, api_url, token)
    except PortReportError as e:
        print(f"rcsc3-singleuser: {e}", file=sys.stderr)
        return 1
    if service_url:
        os.environ["JUPYTERHUB_SERVICE_URL"] = with_address(service_url, host, port)
    else:
        server_args += [f"--port={port}", f"--ip={host}"]
    print(f"rcsc3-singleuser: port {port} reported to the hub (listening on {host or 'every interface'}),"
          f" starting {command}", file=sys.stderr, flush=True)

    if os.environ.get("RCSC3_SINGLEUSER_FAST", "1") != "0":
        # the desktop (prestart profiles) boots on the other cores while this process imports
        from .prestart import start_desktop_early

        if start_desktop_early():
            print("rcsc3-singleuser: Remote Desktop starting alongside the server (prestart)", file=sys.stderr, flush=True)
        block_slow_optional_modules()
        preimport_jupyterlab()

    sys.argv = [command, *server_args]
    if os.path.basename(command) == "jupyterhub-singleuser" and uses_singleuser_extension():
        from .server.app import serve

        return serve(sock, server_args)
    # Another server program binds the port itself: it is free from here until it does.
    print(f"rcsc3-singleuser: warning: {command} cannot take over the listening socket; port {port} is free until it"
          " binds it (set c.RcSC3Spawner.verify_server_identity = False for servers without rcsc3's identity route)",
          file=sys.stderr, flush=True)
    sock.close()
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
