"""The demo's accounts and courses: student1..N, the teacher, their unix groups and passwords.

- Homes are private (0700): in a class, a readable home is a classmate's homework to copy.
- Courses are unix groups (the hub turns them into JupyterHub groups at login): `viz2026` holds
  student1 and student2 and is taught by `teacher` (group `viz2026-teachers`); student3 is in
  `hpc2026`. A site maps its own (LDAP) groups the same way (docs/deploy.md).
- Passwords: the students' is RCSC3_DEMO_PASSWORD (default `rcsc3-demo`, which the README
  prints). The teacher's is RCSC3_TEACHER_PASSWORD, else RCSC3_DEMO_PASSWORD when the site set
  one, else a random one kept in TEACHER_PASSWORD_FILE (root only): the default password every
  reader of the README knows must not open the teacher's account.
- `ensure_class_users(N)`: class01..classNN, a whole class for benchmarks/class_start.py.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import subprocess
from pathlib import Path

from .system import log, run

DEFAULT_PASSWORD = "rcsc3-demo"
TEACHER = "teacher"
TEACHER_PASSWORD_FILE = Path("/var/lib/rcsc3/demo-teacher-password")
#: course -> its students (the first `count` students are spread over these in order)
COURSES = {"viz2026": ("student1", "student2"), "hpc2026": ("student3",)}
#: course -> its teachers
TEACHERS = {"viz2026": (TEACHER,)}


def student_password() -> str:
    return os.environ.get("RCSC3_DEMO_PASSWORD") or DEFAULT_PASSWORD


def teacher_password() -> str:
    """The teacher's password (see the module docstring), made and kept on first use."""
    chosen = os.environ.get("RCSC3_TEACHER_PASSWORD") or os.environ.get("RCSC3_DEMO_PASSWORD")
    if chosen:
        return chosen
    try:
        return TEACHER_PASSWORD_FILE.read_text().strip()
    except FileNotFoundError:
        pass
    password = secrets.token_urlsafe(12)
    TEACHER_PASSWORD_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(TEACHER_PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


def ensure_user(name: str, password: str) -> None:
    """A local account with a private home and this password (for the hub's PAM login); idempotent."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        log(f"creating user {name}")
        run(["useradd", "--create-home", "--shell", "/bin/bash", name])
        pw = pwd.getpwnam(name)
    os.chmod(pw.pw_dir, 0o700)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)


#: benchmarks/class_start.py's students: class01, class02, ... (in no course; private homes like everyone's)
CLASS_USER_PREFIX = "class"


def class_user_names(count: int) -> list[str]:
    """class01..classNN (two digits at least, so they sort as they are numbered up to 99)."""
    return [f"{CLASS_USER_PREFIX}{i:02d}" for i in range(1, count + 1)]


def ensure_class_users(count: int) -> list[str]:
    """The accounts of a whole class for benchmarks/class_start.py (idempotent): class01..count with
    the students' password and private homes, like the demo students. Returns their names."""
    names = class_user_names(count)
    for name in names:
        ensure_user(name, student_password())
    return names


def ensure_group(name: str, members: tuple[str, ...]) -> None:
    try:
        grp.getgrnam(name)
    except KeyError:
        log(f"creating group {name}")
        run(["groupadd", name])
    for member in members:
        if member not in grp.getgrnam(name).gr_mem:
            run(["gpasswd", "-a", member, name])


def ensure_demo_users(count: int = 3) -> None:
    """student1..count, the teacher, and the demo courses' groups."""
    students = [f"student{i}" for i in range(1, count + 1)]
    password = student_password()
    if "RCSC3_DEMO_PASSWORD" not in os.environ:
        log(f"RCSC3_DEMO_PASSWORD is not set: the students' password is '{password}'")
    for name in students:
        ensure_user(name, password)
    ensure_user(TEACHER, teacher_password())
    if not (os.environ.get("RCSC3_TEACHER_PASSWORD") or os.environ.get("RCSC3_DEMO_PASSWORD")):
        log(f"the teacher's password is in {TEACHER_PASSWORD_FILE} (root only); set RCSC3_TEACHER_PASSWORD to choose one")
    for course, members in COURSES.items():
        ensure_group(course, tuple(m for m in members if m in students))
        ensure_group(f"{course}-teachers", TEACHERS.get(course, ()))
