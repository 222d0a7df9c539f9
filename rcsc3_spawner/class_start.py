"""`rcsc3 class start COURSE`: a teacher starts their whole course's servers before the lecture.

It does through the hub's REST API, with the teacher's own token, what the admin page's "Start All"
does for the teacher's course (their role lets them start their course's servers, nobody else's):
every student of the course's JupyterHub group whose server is not running gets one, with the
profile given (e.g. one whose `reservation` is the lecture's Slurm reservation). Students who log
in then find their server, and a prestarted desktop, ready.

    JUPYTERHUB_API_TOKEN=<the teacher's token from /hub/token> rcsc3 class start viz2026 --profile viz2026-lab
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote


class HubError(RuntimeError):
    """The hub refused or did not answer; the message says which request and why."""


class Hub:
    """The few REST calls this needs, with the teacher's token."""

    def __init__(self, url: str, token: str, timeout: float = 30):
        self.api = url.rstrip("/") + "/hub/api"
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                text = answer.read()
                return answer.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, {"message": text.decode(errors="replace")[:300]}
        except (urllib.error.URLError, OSError) as e:
            raise HubError(f"{method} {self.api}{path}: the hub could not be reached ({e})") from None

    def members(self, course: str) -> list[str]:
        status, group = self.call("GET", f"/groups/{quote(course)}")
        if status != 200:
            raise HubError(f"course {course!r}: {status} {group.get('message', '')}".rstrip())
        return sorted(group.get("users", []))

    def server(self, user: str) -> dict | None:
        status, model = self.call("GET", f"/users/{quote(user)}")
        if status != 200:
            raise HubError(f"{user}: {status} {model.get('message', '')}".rstrip())
        return (model.get("servers") or {}).get("")

    def start(self, user: str, options: dict) -> str:
        """Start `user`'s server unless it runs or starts already; returns what happened, in words."""
        current = self.server(user)
        if current and (current.get("ready") or current.get("pending") == "spawn"):
            return "already " + ("running" if current.get("ready") else "starting")
        status, answer = self.call("POST", f"/users/{quote(user)}/server", {"user_options": options})
        if status in (201, 202):
            return "starting"
        raise HubError(f"{user}: {status} {answer.get('message', '')}".rstrip())


def start_class(hub: Hub, course: str, options: dict, wait: float = 0, out=sys.stdout) -> int:
    """Start every student's server of `course`; with `wait`, wait (bounded) until they run. 0 if all do."""
    students = hub.members(course)
    if not students:
        print(f"course {course}: no students in its group yet (they join at their first login)", file=out)
        return 1
    failed: dict[str, str] = {}

    def one(user: str) -> tuple[str, str]:
        try:
            return user, hub.start(user, options)
        except HubError as e:
            failed[user] = str(e)
            return user, f"refused: {e}"

    with ThreadPoolExecutor(max_workers=8) as pool:  # the hub limits concurrent spawns itself
        for user, what in pool.map(one, students):
            print(f"{user}: {what}", file=out, flush=True)
    deadline = time.monotonic() + wait
    pending = [u for u in students if u not in failed]
    while wait and pending and time.monotonic() < deadline:
        still = []
        for user in pending:
            server = hub.server(user)
            if server is None:
                failed[user] = "its spawn failed (the student's spawn page or /hub/home says why)"
            elif not server.get("ready"):
                still.append(user)
        pending = still
        if pending:
            time.sleep(2)  # polling the hub, bounded by --wait
    ready = len(students) - len(failed) - (len(pending) if wait else 0)
    summary = f"course {course}: {len(students)} students, {ready} {'ready' if wait else 'started or running'}"
    if pending and wait:
        summary += f", {len(pending)} still starting after {wait:.0f} s ({', '.join(pending)})"
    if failed:
        summary += f", {len(failed)} failed: " + "; ".join(failed.values())
    print(summary, file=out)
    return 0 if not failed and not (wait and pending) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rcsc3 class", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start", help="start every server of a course (its JupyterHub group)")
    start.add_argument("course", help="the course: its JupyterHub group, e.g. viz2026")
    start.add_argument("--profile", help="the profile slug for every server (default: the hub's first for them)")
    start.add_argument("--option", action="append", default=[], metavar="FIELD=VALUE",
                       help="another spawn form field for every server, e.g. walltime=1:30 (repeatable)")
    start.add_argument("--hub", default=os.environ.get("JUPYTERHUB_URL", "http://127.0.0.1:8000"),
                       help="the hub's public URL (default: $JUPYTERHUB_URL or http://127.0.0.1:8000)")
    start.add_argument("--token-file", help="a file with the teacher's API token (default: $JUPYTERHUB_API_TOKEN)")
    start.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                       help="wait up to this long until every server runs, then report")
    args = parser.parse_args(argv)
    token = open(args.token_file).read().strip() if args.token_file else os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not token:
        print("rcsc3 class: no token: set JUPYTERHUB_API_TOKEN (from the hub's /hub/token page) or --token-file",
              file=sys.stderr)
        return 2
    options = {"profile": args.profile} if args.profile else {}
    for item in args.option:
        field, sep, value = item.partition("=")
        if not sep or not field:
            print(f"rcsc3 class: --option {item!r}: expected FIELD=VALUE", file=sys.stderr)
            return 2
        options[field] = value
    try:
        return start_class(Hub(args.hub, token), args.course, options, wait=args.wait)
    except HubError as e:
        print(f"rcsc3 class: {e}", file=sys.stderr)
        return 1
