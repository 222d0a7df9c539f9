"""A Jupyter server identity provider for the desktop's viewer tests: each token names a person.

The desktop tests run a plain `jupyter server` (no hub), where every token holder is the owner.
To test what the desktop does for the other people JupyterHub lets open a student's server (the
course's teacher, a classmate it was shared with), a test server gets this provider instead of
JupyterHub's login, and JUPYTERHUB_USER names its owner as under JupyterHub: a request with token
T is the user `names[T]`. The same is tested through the real hub, with real logins, in
tests/e2e/test_desktop_sharing.py.
"""

from __future__ import annotations

from jupyter_server.auth.identity import IdentityProvider, User
from traitlets import Dict


class NamedTokens(IdentityProvider):
    names = Dict(help="token -> user name: who a request with that token is").tag(config=True)

    async def get_user_token(self, handler) -> User | None:
        name = self.names.get(self.get_token(handler) or "")
        return User(name) if name else None
