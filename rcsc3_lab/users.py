"""The demo's accounts: student1..N and the teacher, with the demo password."""

from __future__ import annotations

import pwd
import subprocess

from .system import log, run


def ensure_demo_users(names: list[str], password: str) -> None:
    """Create local demo users (idempotent) and set their password for the hub's PAM login."""
    for name in names:
        try:
            pwd.getpwnam(name)
        except KeyError:
            log(f"creating user {name}")
            run(["useradd", "--create-home", "--shell", "/bin/bash", name])
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


