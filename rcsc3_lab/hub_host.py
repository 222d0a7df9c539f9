"""The demo's hub host: root's sudo keeps the job's environment, and the hub's state stays private.

The demo hub runs as root and submits with `sudo -u <student>` like a production hub (without -E);
/etc/sudoers.d/rcsc3 gives the production hub account the same env_keep list as this does for root.
"""

from __future__ import annotations

import os
from pathlib import Path

from .system import run, write_if_changed

SUDOERS_DROPIN = Path("/etc/sudoers.d/rcsc3-lab")
SUDOERS_TEXT = """# managed by rcsc3 lab: the demo hub (root) submits with `sudo -u <student>`; keep exactly what the
# job needs from its environment, as hub_config/sudoers.d/rcsc3 does for a non-root hub account.
Defaults:root env_keep += "JUPYTERHUB_* JPY_API_TOKEN RCSC3_* SLURM_CONF"
"""
#: the demo hub's state (database, cookie secret): root's alone
STATE_DIRS = (Path("/var/lib/rcsc3/hub"), Path("/var/lib/rcsc3/hub-cluster"))


def ensure_root_sudo_env(state: dict) -> None:
    tmp = SUDOERS_DROPIN.with_name(".rcsc3-lab.tmp")  # sudo ignores names with a dot
    if SUDOERS_DROPIN.exists() and SUDOERS_DROPIN.read_text() == SUDOERS_TEXT:
        return
    write_if_changed(tmp, SUDOERS_TEXT, mode=0o440)
    run(["visudo", "-c", "-q", "-f", str(tmp)])
    tmp.replace(SUDOERS_DROPIN)
    state["sudoers_dropin"] = str(SUDOERS_DROPIN)


def remove_root_sudo_env(state: dict) -> None:
    if state.get("sudoers_dropin"):
        Path(state["sudoers_dropin"]).unlink(missing_ok=True)


def private_state_dir(path: Path) -> Path:
    """The hub's state directory, 0700, and its database 0600 before the hub first writes it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for name in ("jupyterhub.sqlite", "jupyterhub_cookie_secret"):
        f = path / name
        if f.exists():
            os.chmod(f, 0o600)
    db = path / "jupyterhub.sqlite"
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # SQLite keeps its mode
    return path
