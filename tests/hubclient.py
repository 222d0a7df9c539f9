"""A small JupyterHub client for tests and benchmarks: log in through /hub/login, get a token, use the REST API."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests


@dataclass
class HubClient:
    base: str
    username: str
    session: requests.Session
    token: str = ""

    @classmethod
    def login(cls, base: str, username: str, password: str) -> HubClient:
        s = requests.Session()
        r = s.get(f"{base}/hub/login", timeout=10)
        r.raise_for_status()
        xsrf = s.cookies.get("_xsrf", "")
        r = s.post(
            f"{base}/hub/login?next=",
            data={"username": username, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=20,
        )
        if r.status_code != 302:
            raise AssertionError(f"login as {username} failed: {r.status_code} {r.text[:300]}")
        client = cls(base, username, s)
        # the login answers with the session's new XSRF cookie; take it from the answer itself (the jar
        # may also hold the one from before the login, under another domain name on a subdomain hub)
        xsrf = r.cookies.get("_xsrf") or s.cookies.get("_xsrf", path="/hub/") or xsrf
        r = s.post(
            f"{base}/hub/api/users/{username}/tokens",
            json={"note": "rcsc3 tests", "expires_in": 3600},
            headers={"X-XSRFToken": xsrf, "Referer": f"{base}/hub/token"},
            timeout=10,
        )
        r.raise_for_status()
        client.token = r.json()["token"]
        return client

    def api(self, method: str, path: str, **kw) -> requests.Response:
        headers = kw.pop("headers", {})
        headers["Authorization"] = f"token {self.token}"
        return requests.request(method, f"{self.base}/hub/api{path}", headers=headers, timeout=kw.pop("timeout", 30), **kw)

    def server_path(self, name: str = "") -> str:
        return f"/users/{self.username}/servers/{name}" if name else f"/users/{self.username}/server"

    def start(self, user_options: dict | None = None, name: str = "") -> requests.Response:
        return self.api("POST", self.server_path(name), json={"user_options": user_options} if user_options is not None else None)

    def stop(self, name: str = "") -> requests.Response:
        return self.api("DELETE", self.server_path(name))

    def user_model(self) -> dict:
        r = self.api("GET", f"/users/{self.username}")
        r.raise_for_status()
        return r.json()

    def server_model(self, name: str = "") -> dict | None:
        return self.user_model().get("servers", {}).get(name)

    def wait_ready(self, name: str = "", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(name)
            if model and model.get("ready"):
                return model
            if model is None or (not model.get("pending") and not model.get("ready")):
                raise AssertionError(f"server {self.username}/{name} is not starting: {model}")
            time.sleep(0.2)
        raise AssertionError(f"server {self.username}/{name} not ready in {timeout}s: {self.server_model(name)}")

    def wait_stopped(self, name: str = "", timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_model(name) is None:
                return
            time.sleep(0.2)
        raise AssertionError(f"server {self.username}/{name} still there after {timeout}s")

    def progress(self, name: str = "", timeout: float = 120) -> list[dict]:
        """Read the spawn progress event stream to its end."""
        import json

        path = f"/users/{self.username}/server/progress" if not name else f"/users/{self.username}/servers/{name}/progress"
        events = []
        with self.api("GET", path, stream=True, timeout=timeout) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    ev = json.loads(line[5:])
                    events.append(ev)
                    if ev.get("ready") or ev.get("failed"):
                        break
        return events
