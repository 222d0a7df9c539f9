#!/usr/bin/env python3
"""docs/deploy.md, replayed on the multi-host lab: a non-root hub on the hub host, a student's spawn through it.

    /opt/rcsc3/venv/bin/python tests/cluster/replay_deploy.py [--keep]   (root, after `rcsc3 lab up --hosts`)

It follows the guide's sections 1 (accounts), 2 (Slurm, the epilog), 3 (the node's venv) and 6 (the
hub host) on the lab's hosts: the hub host `hub` is the guide's hub host, gpu1 its GPU node. Each
step prints its section and the commands it runs, as the guide writes them. Where the guide
cannot be followed literally on this lab, the step says so ("NOT LITERAL: why; instead ...");
where the guide was wrong, it says what the guide now says ("GUIDE FIXED: ..."). Then a student
logs in to that hub (PAM), starts a server, reaches it through the proxy and stops it again.

At the end it undoes what it made (the hub account, the `students` group or membership, the sudo
rules, /etc/rcsc3, the state directory, the cluster's Epilog line) unless --keep. Exit status 0:
every step and the spawn succeeded, and everything was undone.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from hubclient import HubClient  # noqa: E402
from hubproc import PASSWORD  # noqa: E402
from polling import wait_until  # noqa: E402

VENV = Path("/opt/rcsc3/venv")
RCSC3 = str(VENV / "bin" / "rcsc3")
HUB_ACCOUNT = "jupyterhub"
STUDENT_GROUP = "students"
ADMIN_GROUP = "teachers"
STUDENT = "student1"
#: the guide's state directory is /var/lib/rcsc3/hub: on this machine that is `make demo`'s (root's)
STATE_DIR = Path("/var/lib/rcsc3/hub-deploy-replay")
CONFIG = Path("/etc/rcsc3/jupyterhub_config.py")
ENV_FILE = Path("/etc/rcsc3/hub.env")
SUDOERS = Path("/etc/sudoers.d/rcsc3")
EPILOG = Path("/etc/slurm/rcsc3-epilog.sh")
SPAWN = {"profile": "cpu", "cpus": 1, "memory": 1, "walltime": "0:15"}


class ReplayError(RuntimeError):
    """A step of the guide did not do what the guide says."""


class Replay:
    def __init__(self) -> None:
        self.undo: list[tuple[str, Callable[[], None]]] = []
        self.notes: list[str] = []
        st = json.loads(self.run([RCSC3, "lab", "status", "--json", "--hosts"], quiet=True).stdout)
        if not st.get("up"):
            raise ReplayError(f"the multi-host lab is not up ({st.get('problem')}): run `rcsc3 lab up --hosts`")
        self.lab = st
        self.hub_ip = st["hosts"]["hub"]
        self.slurm_conf = st["slurm_conf"]
        self.hub: subprocess.Popen | None = None
        self.hub_url = ""

    # ------------------------------------------------------------ output and commands
    @staticmethod
    def step(title: str) -> None:
        print(f"\n== {title}", flush=True)

    def not_literal(self, text: str) -> None:
        self.notes.append(f"NOT LITERAL: {text}")
        print(f"   NOT LITERAL: {text}", flush=True)

    def fixed(self, text: str) -> None:
        self.notes.append(f"GUIDE FIXED: {text}")
        print(f"   GUIDE FIXED: {text}", flush=True)

    @staticmethod
    def run(argv: list[str], *, check: bool = True, quiet: bool = False, timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
        if not quiet:
            print("   $ " + " ".join(argv), flush=True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
        if check and res.returncode:
            raise ReplayError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
        return res

    def on(self, host: str, argv: list[str], user: str | None = None, **kw) -> subprocess.CompletedProcess:
        """A command on a host of the lab (`rcsc3 lab on`): as root, or as `user` with a clean environment."""
        return self.run([RCSC3, "lab", "on", *(["-u", user] if user else []), host, "--", *argv], **kw)

    def later(self, what: str, undo: Callable[[], None]) -> None:
        self.undo.append((what, undo))

    # ------------------------------------------------------------ §1
    def accounts(self) -> None:
        self.step("§1 Accounts and groups: students in `students`, private homes")
        try:
            group = grp.getgrnam(STUDENT_GROUP)
        except KeyError:
            self.not_literal(f"the lab's students are local accounts, not LDAP/SSSD; making the group {STUDENT_GROUP!r}")
            self.run(["groupadd", STUDENT_GROUP])
            self.later(f"groupdel {STUDENT_GROUP}", lambda: self.run(["groupdel", STUDENT_GROUP], check=False))
            group = grp.getgrnam(STUDENT_GROUP)
        try:
            grp.getgrnam(ADMIN_GROUP)
        except KeyError:
            self.fixed(f"the admin group (RCSC3_ADMIN_GROUP, {ADMIN_GROUP!r}) must exist: JupyterHub's PAM login looks it up "
                       "and answers every login with a 500 when it does not (§1)")
            self.run(["groupadd", ADMIN_GROUP])
            self.later(f"groupdel {ADMIN_GROUP}", lambda: self.run(["groupdel", ADMIN_GROUP], check=False))
        if STUDENT not in group.gr_mem:
            self.run(["gpasswd", "-a", STUDENT, STUDENT_GROUP])
            self.later(f"gpasswd -d {STUDENT} {STUDENT_GROUP}",
                       lambda: self.run(["gpasswd", "-d", STUDENT, STUDENT_GROUP], check=False))
        home = pwd.getpwnam(STUDENT).pw_dir
        mode = stat.S_IMODE(os.stat(home).st_mode)
        if mode & 0o077:
            raise ReplayError(f"{STUDENT}'s home {home} is {oct(mode)}: the guide asks for 0700")
        print(f"   {STUDENT} is in {STUDENT_GROUP}; {home} is {oct(mode)}")

    # ------------------------------------------------------------ §2
    def slurm(self) -> None:
        self.step("§2 Slurm: the epilog on every GPU node, the snippet's settings, the clients on the hub host")
        source = REPO / "hub_config" / "slurm" / "epilog.sh"
        if EPILOG.exists() and EPILOG.read_bytes() != source.read_bytes():
            backup = Path(tempfile.mkdtemp(prefix="rcsc3-replay-")) / EPILOG.name
            shutil.copy2(EPILOG, backup)
            self.later(f"restore {EPILOG}", lambda: shutil.copy2(backup, EPILOG))
        self.run(["install", "-o", "root", "-g", "root", "-m", "0755", str(source), str(EPILOG)])
        self.not_literal(f"one copy serves gpu1 and cpu1: the lab's hosts share this machine's /etc/slurm "
                         f"(on a cluster: the same command on every GPU node); {EPILOG} is also the one-host lab's epilog, "
                         "from the same file")
        conf = Path(self.slurm_conf)
        text = conf.read_text()
        [line] = [x for x in text.splitlines() if x.startswith("Epilog=")]
        self.not_literal(f"the lab writes its own slurm.conf ({conf}, {line}); for this replay its Epilog line is "
                         f"the guide's (Epilog={EPILOG}), then `scontrol reconfigure`")
        conf.write_text(text.replace(line + "\n", f"Epilog={EPILOG}\n"))

        def restore_conf() -> None:
            conf.write_text(text)
            self.slurm_cmd(["scontrol", "reconfigure"], check=False)

        self.later(f"restore {conf} ({line})", restore_conf)
        self.slurm_cmd(["scontrol", "reconfigure"])
        config = self.slurm_cmd(["scontrol", "show", "config"], quiet=True).stdout
        for key, want in (("Epilog", str(EPILOG)), ("GresTypes", "gpu"), ("SelectType", "select/cons_tres"),
                          ("PrologEpilogTimeout", "90")):
            got = re.search(rf"^{key}\s*=\s*(\S+)", config, re.M)
            if not got or got.group(1) != want:
                raise ReplayError(f"slurmctld's {key} is {got.group(1) if got else 'unset'}, the snippet says {want}")
        part = self.slurm_cmd(["scontrol", "show", "partition", "interactive"], quiet=True).stdout
        node = self.slurm_cmd(["scontrol", "show", "node", "gpu1"], quiet=True).stdout
        if "MaxTime=06:00:00" not in part or "Gres=gpu:2" not in node:
            raise ReplayError(f"the interactive partition or gpu1's GPUs are not the snippet's: {part} {node}")
        print("   slurmctld: Epilog, GresTypes=gpu, cons_tres, PrologEpilogTimeout=90; partition interactive MaxTime 6 h; "
              "gpu1 Gres=gpu:2")
        self.not_literal("ProctrackType=proctrack/linuxproc and TaskPlugin=task/none (no cgroup delegation in this "
                         "container), no AllowGroups=students, an untyped Gres and KillWait=5: the lab's slurm.conf")
        ping = self.on("hub", ["scontrol", "ping"], user="nobody")
        if "is UP" not in ping.stdout:
            raise ReplayError(f"the hub host's Slurm clients do not reach slurmctld: {ping.stdout}")
        self.not_literal(f"the hub host's clients use SLURM_CONF={self.slurm_conf}: this machine's /etc/slurm/slurm.conf "
                         "is the one-host lab's")

    def slurm_cmd(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "SLURM_CONF": self.slurm_conf}
        return self.run(argv, env=env, **kw)

    # ------------------------------------------------------------ §3
    def node(self) -> None:
        self.step("§3 GPU node: the venv at the same path, readable by every student; the desktop; rcsc3 doctor")
        self.not_literal(f"no `python3 -m venv {VENV}` and `pip install ...whl` per node: the lab's hosts share this "
                         f"machine's {VENV} (an editable install of this checkout). That covers the same path on every "
                         "host, students' read access, and the same versions on hub and nodes; it does not cover "
                         "installing the wheel, per-node copies drifting apart, or nodes with another OS or Python")
        versions = "import importlib.metadata as m; print(m.version('rcsc3'), m.version('jupyterhub'))"
        seen = {host: self.on(host, [str(VENV / "bin" / "python"), "-c", versions], user=STUDENT).stdout.strip()
                for host in ("gpu1", "cpu1")}
        seen["hub"] = self.on("hub", [str(VENV / "bin" / "python"), "-c", versions], user="nobody").stdout.strip()
        if len(set(seen.values())) != 1:
            raise ReplayError(f"rcsc3 / JupyterHub versions differ between hosts: {seen}")
        version = seen["hub"].split()[0]
        print(f"   rcsc3 and JupyterHub {seen['hub']} on hub, gpu1 and cpu1 (as {STUDENT} on the nodes)")
        verify = self.on("gpu1", [str(VENV / "bin" / "python"), str(REPO / "images" / "verify.py"), "--role", "node",
                                  "--version", version, "--no-binaries"], user=STUDENT, check=False)
        if verify.returncode:
            raise ReplayError(f"images/verify.py --role node on gpu1: {verify.stdout.strip()} {verify.stderr.strip()}")
        self.not_literal("TurboVNC and VirtualGL are not installable here (images/verify.py --no-binaries): the lab's "
                         "desktop is Debian's TigerVNC")
        doctor = self.on("hub", ["srun", "-p", "interactive", "--gres=gpu:1", "-t", "2", str(VENV / "bin" / "rcsc3"),
                                 "doctor"], user=STUDENT, check=False, timeout=120)
        out = doctor.stdout + doctor.stderr
        if not re.search(r"tigervnc|turbovnc", out, re.I):
            raise ReplayError(f"rcsc3 doctor in a job on gpu1 did not report the VNC server: {out}")
        shown = "\n".join("     | " + x for x in out.splitlines()[:30])
        print(f"   rcsc3 doctor in a job on gpu1 (exit {doctor.returncode}):\n{shown}")

    # ------------------------------------------------------------ §6
    def hub_host(self) -> None:
        self.step("§6.1-2 Hub host: packages, the same venv")
        which = self.on("hub", ["sh", "-c", "for p in sudo sbatch squeue scancel scontrol munge configurable-http-proxy; "
                                            "do command -v $p || echo MISSING $p; done"], user="nobody")
        if "MISSING" in which.stdout:
            raise ReplayError(f"hub host: {which.stdout}")

        self.step("§6.3 The account and its state directory")
        self.not_literal(f"state directory {STATE_DIR} instead of /var/lib/rcsc3/hub, which is `make demo`'s hub's (root's) "
                         "on this machine")
        try:
            pwd.getpwnam(HUB_ACCOUNT)
            print(f"   the account {HUB_ACCOUNT} exists already: kept as it is")
        except KeyError:
            self.run(["useradd", "--system", "--home-dir", str(STATE_DIR), "--shell", "/usr/sbin/nologin", HUB_ACCOUNT])
            self.later(f"userdel {HUB_ACCOUNT}", lambda: self.run(["userdel", HUB_ACCOUNT], check=False))
        if STATE_DIR.exists():
            shutil.rmtree(STATE_DIR)  # a state directory left by an interrupted replay: start fresh
        self.run(["install", "-d", "-o", HUB_ACCOUNT, "-g", HUB_ACCOUNT, "-m", "0700", str(STATE_DIR)])
        self.later(f"rm -r {STATE_DIR}", lambda: shutil.rmtree(STATE_DIR, ignore_errors=True))
        if HUB_ACCOUNT not in grp.getgrnam("shadow").gr_mem:
            self.fixed("with PAM on local accounts (pam_unix, /etc/shadow) a non-root hub cannot check passwords: "
                       f"`usermod -aG shadow {HUB_ACCOUNT}` (§6.3; SSSD/LDAP logins need nothing)")
            self.run(["usermod", "-aG", "shadow", HUB_ACCOUNT])
            self.later(f"gpasswd -d {HUB_ACCOUNT} shadow",
                       lambda: self.run(["gpasswd", "-d", HUB_ACCOUNT, "shadow"], check=False))

        self.step("§6.4 sudo rules")
        if SUDOERS.exists():
            backup = Path(tempfile.mkdtemp(prefix="rcsc3-replay-")) / SUDOERS.name
            shutil.copy2(SUDOERS, backup)
            self.later(f"restore {SUDOERS}", lambda: shutil.copy2(backup, SUDOERS))
        else:
            self.later(f"rm {SUDOERS}", lambda: SUDOERS.unlink(missing_ok=True))
        self.run(["sh", "-c", f"install -m 0440 {REPO}/hub_config/sudoers.d/rcsc3 {SUDOERS} && visudo -c"])
        listed = self.run(["sudo", "-u", HUB_ACCOUNT, "sudo", "-n", "-l"])
        allowed = self.run(["sudo", "-u", HUB_ACCOUNT, "sudo", "-n", "-u", STUDENT, "-l", "/usr/bin/scancel", "1"], check=False)
        as_root = self.run(["sudo", "-u", HUB_ACCOUNT, "sudo", "-n", "-u", "root", "-l", "/usr/bin/scancel", "1"], check=False)
        if "/usr/bin/scancel" not in listed.stdout or allowed.returncode or not as_root.returncode:
            raise ReplayError(f"sudo -l as {HUB_ACCOUNT}: {listed.stdout}; as {STUDENT}: {allowed.returncode}; "
                              f"as root: {as_root.returncode}")
        print(f"   as {HUB_ACCOUNT}: scancel as {STUDENT} allowed (exit 0), as root refused (exit {as_root.returncode})")

        self.step("§6.5 Configuration and its environment variables")
        made_etc = not CONFIG.parent.exists()
        if made_etc:
            self.later(f"rm -r {CONFIG.parent}", lambda: shutil.rmtree(CONFIG.parent, ignore_errors=True))
        else:
            for f in (CONFIG, ENV_FILE):
                if f.exists():
                    raise ReplayError(f"{f} exists: this machine has a hub of its own configured; not overwriting it")
                self.later(f"rm {f}", lambda f=f: f.unlink(missing_ok=True))
        self.run(["install", "-D", "-m", "0644", str(REPO / "hub_config" / "production" / "jupyterhub_config.py"), str(CONFIG)])
        ports = self.free_ports(3)
        public, hub_port, proxy_api = ports
        env = {
            "RCSC3_BIND_URL": f"http://{self.hub_ip}:{public}",
            "RCSC3_HUB_CONNECT_IP": self.hub_ip,
            "RCSC3_HUB_IP": self.hub_ip,
            "RCSC3_HUB_PORT": str(hub_port),
            "RCSC3_AUTHENTICATOR": "pam",
            "RCSC3_STUDENT_GROUP": STUDENT_GROUP,
            "RCSC3_ADMIN_GROUP": ADMIN_GROUP,
            "RCSC3_STATE_DIR": str(STATE_DIR),
            "RCSC3_NODE_VENV": str(VENV),
            "SLURM_CONF": self.slurm_conf,
        }
        self.not_literal(f"RCSC3_BIND_URL={env['RCSC3_BIND_URL']}: no TLS certificate here (the guide's default is "
                         "https://0.0.0.0:443, §6.6 not needed); a free port, beside any demo hub on this hub host")
        self.not_literal(f"RCSC3_HUB_PORT={hub_port} instead of 8081 and the proxy's API on 127.0.0.1:{proxy_api} instead "
                         "of 8001 (`--ConfigurableHTTPProxy.api_url`): `make demo-cluster`'s hub may hold the defaults")
        ENV_FILE.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        ENV_FILE.chmod(0o644)
        self.hub_env = env
        self.proxy_api = proxy_api
        print(f"   {ENV_FILE}: " + " ".join(f"{k}={v}" for k, v in env.items()))

    def free_ports(self, count: int) -> list[int]:
        code = ("import socket, sys\nss = [socket.socket() for _ in range(int(sys.argv[2]))]\n"
                "[s.bind((sys.argv[1], 0)) for s in ss]\nprint(' '.join(str(s.getsockname()[1]) for s in ss))")
        res = self.on("hub", [sys.executable, "-c", code, self.hub_ip, str(count)], quiet=True)
        return [int(p) for p in res.stdout.split()]

    def start_hub(self, log: Path) -> None:
        self.step("§6.7 Start it as the hub account, in its state directory")
        env = [f"{k}={v}" for k, v in self.hub_env.items()]
        argv = [RCSC3, "lab", "on", "-u", HUB_ACCOUNT, "hub", "--", "env", *env, "sh", "-c", 'cd "$1" && shift && exec "$@"',
                "sh", str(STATE_DIR), str(VENV / "bin" / "jupyterhub"), "-f", str(CONFIG),
                f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{self.proxy_api}"]
        print("   $ " + " ".join(argv), flush=True)
        out = open(log, "ab")
        self.hub = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.later("stop the hub", self.stop_hub)
        self.hub_url = self.hub_env["RCSC3_BIND_URL"]

        def up() -> bool:
            if self.hub.poll() is not None:
                raise ReplayError(f"the hub exited ({self.hub.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
            try:
                return requests.get(f"{self.hub_url}/hub/api", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 90, "the replayed hub to answer")
        uid = pwd.getpwnam(HUB_ACCOUNT).pw_uid
        # runuser (root) only waits for its child, as su does; everything under it is the hub's
        mine = [p for p in self.hub_processes() if not p[2].startswith("runuser ")]
        if not mine or any(u != uid for _, u, _ in mine):
            raise ReplayError(f"the hub's processes are not all {HUB_ACCOUNT}'s: {mine}")
        print(f"   the hub answers at {self.hub_url}; its processes run as {HUB_ACCOUNT}: "
              + ", ".join(f"{pid} {cmd[:60]}" for pid, _, cmd in mine))

    def hub_processes(self) -> list[tuple[int, int, str]]:
        """The hub and what it started (the proxy, the idle culler): every process in the hub's session."""
        if self.hub is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.getsid(int(entry.name)) != self.hub.pid:
                    continue
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                found.append((int(entry.name), entry.stat().st_uid, cmd))
            except OSError:
                continue
        return found

    def stop_hub(self) -> None:
        if self.hub is None or self.hub.poll() is not None:
            return
        self.hub.send_signal(signal.SIGTERM)
        try:
            self.hub.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.hub.pid, signal.SIGKILL)
            self.hub.wait(10)
        try:
            wait_until(lambda: not self.hub_processes(), 15, "the hub's proxy and services to end")
        except AssertionError:
            for pid, _, _ in self.hub_processes():
                with_suppress(lambda pid=pid: os.kill(pid, signal.SIGKILL))

    # ------------------------------------------------------------ the student
    def spawn(self) -> None:
        self.step(f"A student's spawn through the replayed hub: {STUDENT} logs in (PAM) and starts {SPAWN}")
        client = HubClient.login(self.hub_url, STUDENT, PASSWORD)
        r = client.start(SPAWN)
        if r.status_code not in (201, 202):
            raise ReplayError(f"the spawn was refused: {r.status_code} {r.text}")
        try:
            client.wait_ready(timeout=180)
        except AssertionError as e:
            raise ReplayError(f"the spawn did not finish: {e}") from None
        status = requests.get(f"{self.hub_url}/user/{STUDENT}/api/status",
                              headers={"Authorization": f"token {client.token}"}, timeout=20)
        if status.status_code != 200:
            raise ReplayError(f"{STUDENT}'s server does not answer through the proxy: {status.status_code}")
        jobs = self.slurm_cmd(["squeue", "-h", "-u", STUDENT, "-o", "%i %P %B %T"], quiet=True).stdout.split("\n")
        jobs = [j for j in jobs if j.strip()]
        if len(jobs) != 1 or not jobs[0].endswith("interactive gpu1 RUNNING"):
            raise ReplayError(f"{STUDENT}'s jobs: {jobs}")
        job = jobs[0].split()[0]
        shown = self.slurm_cmd(["scontrol", "show", "job", job], quiet=True).stdout
        if f"UserId={STUDENT}(" not in shown:
            raise ReplayError(f"job {job} does not run as {STUDENT}: {shown}")
        print(f"   job {job} of {STUDENT} (submitted by {HUB_ACCOUNT} through sudo) runs on gpu1; its server answers "
              f"{self.hub_url}/user/{STUDENT}/api/status with 200")
        client.stop()
        client.wait_stopped(timeout=60)
        wait_until(lambda: not self.slurm_cmd(["squeue", "-h", "-j", job, "-o", "%i"], quiet=True, check=False).stdout.strip(),
                   60, f"job {job} to leave the queue")
        # the epilog at the guide's path ran: an epilog that fails drains the node, and it leaves
        # nothing of the student on the node (the desktop and engines it would have to end)
        state = self.slurm_cmd(["sinfo", "-h", "-N", "-n", "gpu1", "-o", "%T"], quiet=True).stdout.split()
        if not state or any(s.startswith(("drain", "down")) for s in state):
            raise ReplayError(f"gpu1 is {state} after job {job}: its epilog ({EPILOG}) failed?")
        uid = pwd.getpwnam(STUDENT).pw_uid

        def left_on_gpu1() -> list[int]:
            init = json.loads(self.run([RCSC3, "lab", "status", "--json", "--hosts"], quiet=True).stdout)["daemons"][
                "nodeinit-gpu1"]
            pidns = os.readlink(f"/proc/{init}/ns/pid")
            found = []
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and entry.stat().st_uid == uid and os.readlink(entry / "ns" / "pid") == pidns:
                        found.append(int(entry.name))
                except OSError:
                    continue
            return found

        wait_until(lambda: not left_on_gpu1(), 30, f"{STUDENT}'s processes on gpu1 to end")
        print(f"   stopped: the hub cancelled job {job} through sudo; gpu1 is {state[0]} after the guide's epilog "
              f"({EPILOG}) and nothing of {STUDENT} runs there")

    # ------------------------------------------------------------ run
    def cleanup(self) -> list[str]:
        problems = []
        for what, undo in reversed(self.undo):
            try:
                undo()
                print(f"   undone: {what}")
            except Exception as e:  # keep undoing the rest
                problems.append(f"{what}: {e}")
        self.undo = []
        return problems


def with_suppress(fn: Callable[[], None]) -> None:
    try:
        fn()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the replayed hub's accounts and files (not the hub)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("replay_deploy: run as root (it creates accounts and installs sudo rules, as the guide's admin does)",
              file=sys.stderr)
        return 2
    log = Path(tempfile.mkdtemp(prefix="rcsc3-replay-")) / "hub.log"
    t0 = time.monotonic()
    replay = None
    ok = False
    try:
        replay = Replay()
        replay.accounts()
        replay.slurm()
        replay.node()
        replay.hub_host()
        replay.start_hub(log)
        replay.spawn()
        ok = True
    except (ReplayError, AssertionError, subprocess.TimeoutExpired) as e:
        print(f"\nREPLAY FAILED: {e}", flush=True)
        if log.exists():
            print("last lines of the hub's log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    finally:
        if replay is not None:
            replay.step("Undo")
            if args.keep:
                replay.stop_hub()
                print("   --keep: accounts, sudo rules and files left as they are")
                problems = []
            else:
                problems = replay.cleanup()
            for p in problems:
                print(f"   NOT UNDONE: {p}")
            ok = ok and not problems
            print("\n" + "\n".join(replay.notes))
    print(f"\nreplay {'succeeded' if ok else 'FAILED'} in {time.monotonic() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
