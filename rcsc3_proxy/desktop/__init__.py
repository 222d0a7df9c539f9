"""The Remote Desktop, behind jupyter-server-proxy's `desktop` and `desktop-vnc` routes.

In the Jupyter server process:
- `server_proxy`: the entry points jupyter-server-proxy loads (`setup_desktop`, `setup_desktop_vnc`)
- `supervisor_launcher`: starts the desktop supervisor, tied to the server's life
- `bridge/`: rcsc3's handlers on the server for `desktop/` and `desktop-vnc/` (`route`): the websocket
  straight into Xvnc's unix socket (`handler`, `rfb_prelude`), everyone but the owner view-only
  (`rfb_client`), who is watching and the owner's say over it (`viewers`, `viewers_api`)
- `request_guard`: which requests may drive the desktop (each person's own page token, who is calling)
- `settings`: `c.RemoteDesktop.*`

In the supervisor process (`python -m rcsc3_proxy.desktop.supervisor`):
- `supervisor`: serves the noVNC page (`static/`) and its small API on a private unix socket
- `manager`: starts, watches and stops one desktop (Xvnc + the session in `session/`)
- `vnc`: TurboVNC / TigerVNC detection and the Xvnc command line
- `gl`: VirtualGL on the job's GPU, or Mesa
- `paths`, `xauth`, `procs`: the private runtime directory, the X cookie, the process tree

On the command line: `doctor` (`rcsc3 doctor`), `novnc` (`rcsc3 novnc-bundle`).
"""
