"""Courses as JupyterHub groups, filled from the students' unix groups at each login (PAM).

A course is a unix group (LDAP/SSSD on a cluster): its students are its members, its teachers
the members of `<course>-teachers`. `CourseGroupsPAMAuthenticator` (entry point `rcsc3-pam`) is
JupyterHub's PAM login that also hands JupyterHub the user's course groups, with
`manage_groups` on: profiles can then be restricted to a course (`profiles[].groups`) and a
course's teacher can be given a JupyterHub role on the course's group (see the hub configs).
Which unix groups count as courses is `course_groups` (a regular expression), so that a
student's other groups (`users`, `audio`, ...) do not become JupyterHub groups.

With OAuth, oauthenticator's own `manage_groups` (groups from the provider's claim) does the same.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import re

from jupyterhub.auth import PAMAuthenticator
from traitlets import Unicode, default, validate


class CourseGroupsPAMAuthenticator(PAMAuthenticator):
    """PAM login; the user's unix groups that name courses become their JupyterHub groups."""

    course_groups = Unicode(
        r"[a-z][a-z0-9]*[0-9]{4}(-teachers)?",
        help="""Regular expression (matched whole) of the unix groups that are courses, or their
        teachers (`<course>-teachers`). Members' matching groups become their JupyterHub groups at
        each login; groups that do not match are left out.""",
    ).tag(config=True)

    @validate("course_groups")
    def _valid_pattern(self, proposal: dict) -> str:
        try:
            re.compile(proposal["value"])
        except re.error as e:
            raise ValueError(f"c.CourseGroupsPAMAuthenticator.course_groups: {e}") from None
        return proposal["value"]

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    def unix_course_groups(self, username: str) -> list[str]:
        """The user's unix groups (NSS: may ask LDAP) that match `course_groups`."""
        pattern = re.compile(self.course_groups)
        try:
            gids = os.getgrouplist(username, pwd.getpwnam(username).pw_gid)
        except KeyError:
            return []
        names = set()
        for gid in gids:
            try:
                names.add(grp.getgrgid(gid).gr_name)
            except KeyError:
                continue
        return sorted(n for n in names if pattern.fullmatch(n))

    async def authenticate(self, handler, data):
        result = await super().authenticate(handler, data)
        if not result:
            return result
        name = result if isinstance(result, str) else result["name"]
        model = {"name": name} if isinstance(result, str) else dict(result)
        # NSS lookups can be slow (LDAP): off the hub's event loop
        model["groups"] = await asyncio.get_running_loop().run_in_executor(None, self.unix_course_groups, name)
        return model


def course_teacher_role(course: str, teachers_group: str | None = None) -> dict:
    """A JupyterHub role for a course's teachers (the members of `<course>-teachers`): see, start,
    stop and open their course's servers (admin page and REST API), and nobody else's."""
    only = f"!group={course}"
    return {
        "name": f"{course}-teacher",
        "description": f"Teachers of {course}: their course's students and servers, nobody else's",
        "scopes": ["admin-ui", f"list:users{only}", f"read:users{only}", f"read:users:activity{only}",
                   f"read:servers{only}", f"servers{only}", f"access:servers{only}", f"read:groups{only}",
                   f"list:groups{only}"],
        "groups": [teachers_group or f"{course}-teachers"],
    }
