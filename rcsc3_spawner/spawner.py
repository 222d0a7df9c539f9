"""RcSC3Spawner: a student's Jupyter server as a Slurm job on the GPU partition.

It keeps batchspawner's model (a batch job whose server reports its port back
to the hub; rcsc3's node-side `rcsc3-singleuser` does that in 2 s instead of 5) and replaces what goes wrong with it on
a teaching cluster: student input is parsed and validated instead of merged
into the script, the job finds the node's Python environment by absolute path,
the spawn page shows Slurm's real state, pending reason and estimated start,
a job that dies early fails the spawn within seconds with its log, one shared
`squeue` serves every user, and an unreachable slurmctld never loses a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import pwd
import re
import shutil
import sys
import time
import weakref
from datetime import UTC
from typing import Any, ClassVar

from batchspawner import SlurmSpawner
from jupyterhub.spawner import Spawner
from jupyterhub.utils import fmt_ip_url
from sqlalchemy.orm import object_session
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Dict, Float, Instance, Integer, List, Unicode, Union, default, validate

from . import port_report, server_identity
from .batch_script import JobSpec, ScriptError, render_batch_script
from .form import render_options_form
from .inherited_settings import ignored_settings
from .job_end import describe_end, describe_time_left
from .options import OptionError, SpawnRequest, form_to_options, parse_spawn_options
from .profiles import DEFAULT_PROFILES, Profile, ProfileError, human_walltime, parse_profiles, profiles_help
from .slurm.cluster_info import ClusterInfo, SlurmInfoCache
from .slurm.poller import GONE, JobInfo, SlurmJobPoller
from .subprocesses import CommandResult, run_command

port_report.install()

_TOKEN_RE = re.compile(r"((?:TOKEN|SECRET|PASSWORD|KEY)[A-Z_]*=)(\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Hide values of *TOKEN*/*SECRET*/*PASSWORD*/*KEY* variables in logged text."""
    return _TOKEN_RE.sub(r"\1[redacted]", text)


class SpawnFailure(web.HTTPError):
    """A spawn failed for a reason the student should read on the spawn page.

    An HTTPError, so JupyterHub relays it to the student (and logs it without a traceback).
    """

    def __init__(self, message: str, log_tail: str = "", status_code: int = 500):
        super().__init__(status_code, "%s", message + (f"\n{log_tail}" if log_tail else ""))
        self.jupyterhub_message = message
        tail = f"<pre class='rcsc3-log'>{html.escape(log_tail)}</pre>" if log_tail else ""
        self.jupyterhub_html_message = f"<p>{html.escape(message)}</p>{tail}"


class RcSC3Spawner(SlurmSpawner):
    """Spawn each student's server as a Slurm batch job on the (GPU) partition of their profile."""

    # ------------------------------------------------------------ admin settings
    profiles = List(
        Union([Dict(), Instance(Profile)]),
        help="""Spawn profiles offered on the form: a list of dicts, each validated into a Profile when the
        configuration is loaded (a malformed one stops the hub with the profile and key named). The
        first profile a student may use is their default; bounds are clipped further to what Slurm
        reports for the partition. A profile's keys:\n\n""" + profiles_help(),
    ).tag(config=True)

    @default("profiles")
    def _default_profiles(self) -> list[Profile]:
        return parse_profiles(DEFAULT_PROFILES)

    @validate("profiles")
    def _validate_profiles(self, proposal: dict) -> list[Profile]:
        try:
            return parse_profiles(proposal["value"])
        except ProfileError as e:
            raise ValueError(f"c.RcSC3Spawner.profiles: {e}") from None

    form_template = Unicode(
        "form.html",
        help="""Jinja template of the spawn form, looked up in form_template_paths, then in rcsc3's own
        templates (rcsc3_spawner/templates/; also reachable as "rcsc3/form.html" to extend it).""",
    ).tag(config=True)

    form_template_paths = List(
        Unicode(), help="Directories with a site's own form templates, searched before rcsc3's.",
    ).tag(config=True)

    server_check_interval = Float(
        0.05,
        help="""Seconds between tries of the job's Jupyter server once it reported its port (until it
        answers HTTP). A refused connection is cheap, and every tick here is time the student waits.""",
    ).tag(config=True)

    verify_server_identity = Bool(
        True,
        help="""Take the job's server as up only when it proves it holds this server's API token
        (rcsc3-singleuser's `rcsc3/api/identity` route answers a fresh challenge with an HMAC of it).
        Another user's process that got hold of the reported port then fails the spawn with a clear
        message instead of receiving the student's traffic. Turn off only for servers started
        without rcsc3-singleuser (e.g. singleuser_launcher = "batchspawner-singleuser"), which then
        count as up at their first HTTP answer.""",
    ).tag(config=True)

    singleuser_launcher = Unicode(
        "rcsc3-singleuser",
        help="""Program in the node venv's bin/ that reports the server's port to the hub and then runs
        `cmd` (jupyterhub-singleuser). rcsc3-singleuser reports the port before the heavy imports and
        skips two import-time costs, so the server listens about 3 s sooner; set
        "batchspawner-singleuser" for nodes whose environment has batchspawner but not rcsc3.""",
    ).tag(config=True)

    node_venv = Unicode(
        help="""Python environment with rcsc3 and JupyterLab on the compute nodes, by absolute path.
        The job puts its bin/ first on PATH and runs the server from it, because sudo's
        secure_path and Slurm's environment handling drop the hub's PATH. Default: the hub's own
        environment (sys.prefix), right when hub and nodes share /opt/rcsc3/venv.""",
    ).tag(config=True)

    @default("node_venv")
    def _default_node_venv(self) -> str:
        return sys.prefix

    submit_prefix = List(
        Unicode(),
        default_value=["sudo", "-u", "{username}", "--"],
        help="""argv prefix to run sbatch, scancel and the log reader as the student
        ('{username}' is replaced). Run without a shell. sudo resets the environment and keeps
        what the job needs (env_keep in hub_config/sudoers.d/rcsc3: JUPYTERHUB_*, JPY_API_TOKEN,
        RCSC3_*, SLURM_CONF). [] runs them as the hub itself, which is refused when the hub runs as
        root (every job would be root's).""",
    ).tag(config=True)

    @validate("submit_prefix")
    def _validate_submit_prefix(self, proposal: dict) -> list:
        if not proposal["value"] and os.geteuid() == 0:
            raise ValueError("c.RcSC3Spawner.submit_prefix = [] with a hub running as root would run every "
                             "student's job as root; keep the default sudo prefix (docs/deploy.md)")
        return proposal["value"]

    job_name_template = Unicode(
        "rcsc3-{username}{servername}",
        help="Slurm job name; {username} and {servername} ('-name' for named servers) are replaced and sanitised.",
    ).tag(config=True)

    job_log_template = Unicode(
        "{homedir}/.rcsc3/logs/jupyter-%j.log",
        help="""Job output file on the node ({homedir}, {username}; %j is Slurm's job id). Its
        directory is created as the student before submission; its tail is shown when a job fails.""",
    ).tag(config=True)

    job_prologue = Unicode(
        "",
        help="""Admin-only shell lines run in the job before the server starts (e.g. `module load cuda`).
        Students cannot change it.""",
    ).tag(config=True)

    example_notebooks_dir = Unicode(
        help="""Directory on the nodes with example notebooks to copy into each student's home on
        their first start. Default: share/rcsc3/notebooks of node_venv (installed with rcsc3).""",
    ).tag(config=True)

    @default("example_notebooks_dir")
    def _default_example_notebooks_dir(self) -> str:
        return os.path.join(self.node_venv, "share", "rcsc3", "notebooks")

    example_notebooks_target = Unicode(
        "rcsc3-notebooks",
        help="Folder (relative to the student's home) the example notebooks are copied to, once. Empty: don't copy.",
    ).tag(config=True)

    slurm_poll_interval = Float(
        help="""Seconds between the hub's shared `squeue` rounds while nothing is starting or
        stopping (with ±10% jitter): one squeue for all users per round. Default: the
        Spawner's poll_interval, so the hub makes at most one squeue per poll interval, and
        a job that ends by itself is noticed within one poll.""",
    ).tag(config=True)

    @default("slurm_poll_interval")
    def _default_slurm_poll_interval(self) -> float:
        return float(self.poll_interval)

    slurm_fast_poll_interval = Float(
        0.1,
        help="Seconds between shared `squeue` rounds while any server is starting or stopping.",
    ).tag(config=True)

    slurm_pending_backoff_after = Float(
        10.0,
        help="""Seconds a job may pend with fast rounds. After that, the spawn page's look at the queue
        comes after a tenth of the time waited so far (at most slurm_poll_interval): a class waiting in
        the queue for minutes asks Slurm about once per poll interval, not every fast round.""",
    ).tag(config=True)

    slurm_start_check_interval = Float(
        1.0,
        help="""Seconds between looks at the job's state while its Jupyter server starts (the job runs):
        a job that ends then is reported within this.""",
    ).tag(config=True)

    slurm_info_ttl = Float(
        60.0,
        help="Seconds to cache partition and node limits read from `scontrol` for the form and validation.",
    ).tag(config=True)

    pending_timeout = Float(
        help="""Seconds a job may stay pending before the spawn gives up, cancels it and tells the
        student Slurm's reason. Default: start_timeout minus 10 s, so the student gets the reason
        rather than a bare timeout.""",
    ).tag(config=True)

    @default("pending_timeout")
    def _default_pending_timeout(self) -> float:
        return max(5.0, self.start_timeout - 10)

    server_up_timeout = Float(
        120.0,
        help="Seconds a running job's server may take to answer HTTP before the spawn fails with the job's log.",
    ).tag(config=True)

    stop_grace_period = Float(
        0.3,
        help="""Seconds between SIGTERM to the server and SIGKILL of the whole job. The server has
        nothing to save (notebooks are saved by the browser); processes that miss their own
        clean-up are removed by the node epilog (hub_config/slurm/epilog.sh).""",
    ).tag(config=True)

    stop_timeout = Float(
        20.0,
        help="Seconds to wait for a cancelled job to leave the queue before handing the cancel to the background retrier.",
    ).tag(config=True)

    log_tail_lines = Integer(
        30,
        help="How many lines of the job's log to show the student when a spawn fails.",
    ).tag(config=True)

    show_estimated_start = Bool(
        True,
        help="Show Slurm's estimated start time (squeue %S, as `squeue --start`) for pending jobs on the spawn page.",
    ).tag(config=True)

    # Batch systems need longer than the local default; our own pending timeout fires first.
    start_timeout = Integer(600, help="Seconds before the hub gives up on a spawn.").tag(config=True)

    # ------------------------------------------------------------ runtime state
    #: the hub's one poller and one limits cache (per event loop), made by the first spawner with
    #: parent=, as kubespawner's reflectors
    _pollers: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()
    _caches: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        problems = ignored_settings(self.config)
        if problems:
            raise ValueError("rcsc3: configuration error: " + "; ".join(problems))
        self._port_reported: asyncio.Event | None = None
        self._progress_events: list[dict] = []
        self._progress_changed: asyncio.Event | None = None
        self._request: SpawnRequest | None = None
        self.job_host = ""
        #: how the last job ended, for the student's next visit ({"state", "reason", "at"})
        self.last_end: dict[str, str] = {}

    @property
    def poller(self) -> SlurmJobPoller:
        loop = asyncio.get_running_loop()
        poller = self._pollers.get(loop)
        if poller is None:
            poller = self._pollers[loop] = SlurmJobPoller(
                parent=self, interval=self.slurm_poll_interval, fast_interval=self.slurm_fast_poll_interval)
        return poller

    @property
    def slurm_info(self) -> SlurmInfoCache:
        loop = asyncio.get_running_loop()
        cache = self._caches.get(loop)
        if cache is None:
            cache = self._caches[loop] = SlurmInfoCache(parent=self, ttl=self.slurm_info_ttl)
        return cache

    def visible_profiles(self) -> list[Profile]:
        """The profiles this student may use: those without groups, and those of their courses."""
        groups = {g.name for g in getattr(self.user, "groups", [])}
        return [p for p in self.profiles if not p.groups or groups & set(p.groups)]

    def report_port(self, port: int) -> None:
        """Called by the hub's port-report API handler when the job's server picked its port."""
        self.port = port
        if self._port_reported is not None:
            self._port_reported.set()

    # ------------------------------------------------------------ options
    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    async def _render_options_form(self, spawner: RcSC3Spawner) -> str:
        profiles = self.visible_profiles()
        if not profiles:
            return ("<p class='rcsc3-notice'>No profile of this hub is open to your courses; "
                    "ask your course staff.</p>")
        cluster = await self.slurm_info.get()
        previous = self.orm_spawner.user_options if self.orm_spawner is not None else None
        return render_options_form(profiles, cluster, previous or {}, self.slurm_info.last_error,
                                   template=self.form_template, site_paths=tuple(self.form_template_paths),
                                   last_end=self.describe_last_end())

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # user_options are validated in start() against live Slurm limits, for the form and the
        # API alike (and on JupyterHub < 5.3, which has no apply hook); nothing to apply here.
        return lambda spawner, user_options: None

    @default("options_from_form")
    def _default_options_from_form(self):
        return self._options_from_form

    def _options_from_form(self, formdata: dict[str, list[str]]) -> dict:
        # Same field names as the REST API; validated once in apply/start with live limits,
        # and here too (with cached limits) so a bad form comes back with its error at once.
        options = form_to_options(formdata)
        try:
            return self._parse(options, self.slurm_info.cached).as_user_options()
        except OptionError as e:
            raise web.HTTPError(e.status, str(e)) from None

    async def _validated_request(self) -> SpawnRequest:
        # First against the profiles alone, before any await: the hub answers an API spawn once
        # slow_spawn_timeout has passed (0.3 s in hub_config), and a malformed request must get
        # its 400 then, not a 202, even when the Slurm limits below need a fresh scontrol.
        # Slurm's limits only narrow the profiles' bounds, so this never refuses a good request.
        self._parse_or_400(None)
        return self._parse_or_400(await self.slurm_info.get())

    def _parse_or_400(self, cluster: ClusterInfo | None) -> SpawnRequest:
        try:
            return self._parse(self.user_options, cluster)
        except OptionError as e:
            self.log.warning("rcsc3: rejected options for %s: %s", self._log_name, e)
            raise web.HTTPError(e.status, str(e)) from None

    def _parse(self, raw: Any, cluster: ClusterInfo | None) -> SpawnRequest:
        return parse_spawn_options(raw, self.visible_profiles(), cluster, all_profiles=self.profiles)

    # ------------------------------------------------------------ helpers
    def _format(self, template: str, homedir: str) -> str:
        server = f"-{self.name}" if self.name else ""
        return template.format(username=self.user.name, homedir=homedir, servername=server)

    async def _homedir(self) -> str:
        # getpwnam may ask LDAP/SSSD: keep it off the hub's event loop
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, lambda: pwd.getpwnam(self.user.name).pw_dir)
        except KeyError:
            raise SpawnFailure(f"there is no account {self.user.name!r} on the hub host to submit the job as") from None

    def _prefix(self) -> list[str]:
        prefix = [p.replace("{username}", self.user.name) for p in self.submit_prefix]
        if prefix and not os.path.isabs(prefix[0]):
            prefix[0] = shutil.which(prefix[0]) or prefix[0]
        return prefix

    def _job_name(self) -> str:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", self._format(self.job_name_template, homedir=""))
        return name[:128]

    def _add_progress(self, progress: int, message: str, html_message: str = "") -> None:
        event = {"progress": progress, "message": message}
        if html_message:
            event["html_message"] = html_message
        self._progress_events.append(event)
        if self._progress_changed is not None:
            self._progress_changed.set()
        self.log.info("rcsc3: %s: %s", self._log_name, message)

    @default("env_keep")
    def _default_env_keep(self) -> list[str]:
        # SLURM_CONF: a hub pointed at a non-default slurm.conf must submit to that cluster, and the
        # job's own srun steps must find it too
        return [*Spawner.env_keep.default(), "SLURM_CONF"]

    def get_env(self) -> dict[str, str]:
        # JupyterHub's environment for the server (its token and JUPYTERHUB_* variables, plus
        # env_keep), not batchspawner's, which adds USER/HOME/SHELL with two getpwnam calls on the
        # hub's event loop: the batch script sets those on the node from the node's own accounts.
        env = Spawner.get_env(self)
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["RCSC3_VENV"] = self.node_venv
        return env

    def _singleuser_command(self) -> list[str]:
        bin_dir = os.path.join(self.node_venv, "bin")
        cmd = list(self.cmd) if self.cmd else ["jupyterhub-singleuser"]
        if not os.path.isabs(cmd[0]):
            cmd[0] = os.path.join(bin_dir, cmd[0])
        return [os.path.join(bin_dir, self.singleuser_launcher), *cmd, *self.get_args()]

    def _describe(self, req: SpawnRequest) -> str:
        gpu = f"{req.gpus} GPU{'s' if req.gpus != 1 else ''}, " if req.gpus else ""
        return (f"{req.profile.partition} partition: {gpu}{req.cpus} CPU{'s' if req.cpus != 1 else ''}, "
                f"{req.memory_gb} GiB, {human_walltime(req.walltime_minutes)} h")

    async def _log_tail(self) -> str:
        if not self.job_id:
            return ""
        path = self._format(self.job_log_template, await self._homedir()).replace("%j", self.job_id)
        res = await run_command([*self._prefix(), "tail", "-n", str(self.log_tail_lines), "--", path], timeout=10)
        if not res.ok:
            return f"(the job log {path} could not be read: {res.describe()})"
        return f"Last lines of {path}:\n{res.stdout.rstrip()}"

    # ------------------------------------------------------------ submit
    async def submit_batch_script(self) -> str:
        req = self._request
        assert req is not None
        homedir = await self._homedir()
        log_path = self._format(self.job_log_template, homedir)
        spec = JobSpec(
            job_name=self._job_name(),
            log_path=log_path,
            workdir=homedir,
            venv=self.node_venv,
            command=self._singleuser_command(),
            prologue=self.job_prologue,
            examples_source=self.example_notebooks_dir,
            examples_target=self.example_notebooks_target,
        )
        try:
            script = render_batch_script(req, spec)
        except ScriptError as e:
            raise SpawnFailure(f"the job could not be written safely: {e}") from None
        self.log.info("rcsc3: submitting for %s:\n%s", self._log_name, redact(script))
        # One sudo: make the log directory, then exec sbatch. The shell text is constant;
        # the directory is a positional argument, never interpolated.
        argv = [
            *self._prefix(), "/bin/sh", "-c", 'mkdir -p -m 700 -- "$1" && exec sbatch --parsable', "sh",
            os.path.dirname(log_path),
        ]
        submit = asyncio.ensure_future(run_command(argv, input=script, env=self.get_env(), timeout=60))
        try:
            res = await asyncio.shield(submit)
        except asyncio.CancelledError:
            # Stopped while sbatch runs: the job may exist already. Let sbatch finish (it is bounded)
            # and cancel what it made, so no job is left without its id on record.
            res = await submit
            if res.ok:
                with contextlib.suppress(SpawnFailure):  # no id: sbatch made no job
                    self.job_id = self._submitted_job_id(res)
                    await self._cancel_quietly(now=True)
            raise
        if not res.ok:
            raise SpawnFailure(f"Slurm refused the job: {res.stderr.strip() or res.stdout.strip()}")
        self.job_id = self._submitted_job_id(res)
        return self.job_id

    def _submitted_job_id(self, res: CommandResult) -> str:
        try:
            return self.parse_job_id(res.stdout.strip())
        except Exception:
            raise SpawnFailure(f"sbatch gave no job id: {res.stdout.strip()!r}") from None

    # ------------------------------------------------------------ start
    async def start(self) -> tuple[str, int]:
        self._progress_events = []
        self._progress_changed = asyncio.Event()
        self._port_reported = asyncio.Event()
        self.port = 0
        self.job_id = ""
        self._request = req = await self._validated_request()
        self._add_progress(5, f"Submitting to Slurm ({self._describe(req)})")
        t0 = time.monotonic()
        await self.submit_batch_script()
        # Persist the job id now: a hub restart during a long pending wait must find the job again.
        self._persist_state()
        self._add_progress(10, f"Submitted job {self.job_id}")
        self.poller.watch(self.job_id)
        try:
            info = await self._wait_until_running(t0)
            self.job_host = info.batch_host
            self.ip = await self._node_address(info.batch_host)
            self._add_progress(60, f"Job {self.job_id} running on {info.batch_host}; starting the Jupyter server")
            await self._wait_for_server()
        except asyncio.CancelledError:
            # JupyterHub's "Stop" while the job waits: cancel it at once (JupyterHub gives a cancelled
            # spawn a second before it stops the server) and say so on the student's next visit
            self._record_end("CANCELLED", "you stopped it while it waited for Slurm")
            await self._cancel_quietly(now=True)
            raise
        except BaseException:
            await self._cancel_quietly()
            raise
        self.poller.watch(self.job_id, self._on_job_gone)
        self.last_end = {}
        self._add_progress(95, f"Jupyter server up on {self.job_host}:{self.port}")
        return self.ip, self.port

    async def _wait_until_running(self, t0: float) -> JobInfo:
        last_message = ""
        while True:
            waited = time.monotonic() - t0
            if waited > self.slurm_pending_backoff_after:
                await asyncio.sleep(min(self.slurm_poll_interval, waited / 10))  # the cadence, not a wait for a state
            await self.poller.refresh()
            # what Slurm said in an earlier round is stale while it does not answer
            info = self.poller.get(self.job_id) if self.poller.known else None
            if info is GONE:
                raise SpawnFailure(f"Job {self.job_id} ended{self._final_state()} before it started.",
                                   await self._log_tail())
            if isinstance(info, JobInfo) and info.running:
                return info
            waited = time.monotonic() - t0
            if isinstance(info, JobInfo) and info.pending:
                reason = info.reason or "waiting to be scheduled"
                message = f"Job {self.job_id} pending: {reason}"
                position = self.poller.positions.get(self.job_id)
                if position:
                    message += f"; number {position[0]} of {position[1]} waiting for {info.partition or 'this partition'}"
                if self.show_estimated_start and info.start_time:
                    message += f"; estimated start {info.start_time.replace('T', ' ')}"
                if waited > self.pending_timeout:
                    raise SpawnFailure(
                        f"Job {self.job_id} was still pending after {waited:.0f} s ({reason}); job cancelled. "
                        "Try a smaller request or another profile, or try again later."
                    )
            elif isinstance(info, JobInfo):
                message = f"Job {self.job_id}: {info.state}"
            else:
                message = f"Job {self.job_id}: Slurm is not answering ({self.poller.last_error}); retrying"
                if waited > self.pending_timeout:
                    raise SpawnFailure(f"Slurm did not answer for {waited:.0f} s; job {self.job_id} cancelled.")
            if message != last_message:
                self._add_progress(20 if "pending" in message else 15, message)
                last_message = message

    async def _node_address(self, node: str) -> str:
        cluster = await self.slurm_info.get()
        if cluster is not None and node not in cluster.node_addresses:
            cluster = await self.slurm_info.get(max_age=0)  # a node added since the last read
        if cluster is not None and node in cluster.node_addresses:
            return cluster.node_addresses[node]
        return node

    async def _wait_for_server(self) -> None:
        """Wait for the port report, then for the student's server to prove itself, failing at once
        if the job ends meanwhile or someone else answers on the port.

        rcsc3-singleuser listens before it reports, so a check's connection is accepted at once and
        answered as soon as the server serves; one check at a time, the next `server_check_interval`
        after a refused one, while the job's state follows the shared poller's rounds.
        """
        assert self._port_reported is not None
        deadline = time.monotonic() + self.server_up_timeout
        client = AsyncHTTPClient()
        job_state: asyncio.Future | None = None
        probe: asyncio.Future | None = None
        port_wait: asyncio.Future | None = None
        next_probe = 0.0
        try:
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise SpawnFailure(
                        f"Job {self.job_id} runs but its Jupyter server did not answer in "
                        f"{self.server_up_timeout:.0f} s; job cancelled.",
                        await self._log_tail(),
                    )
                if probe is not None and probe.done():
                    answer, probe = probe.result(), None
                    if answer.genuine:
                        return
                    if answer.answered:
                        raise self._impostor(answer.detail)
                    next_probe = now + self.server_check_interval
                if job_state is not None and job_state.done():
                    info = self.poller.get(self.job_id)
                    if info is GONE or (isinstance(info, JobInfo) and not info.running):
                        state = f" ({info.state})" if isinstance(info, JobInfo) else self._final_state()
                        raise SpawnFailure(
                            f"Job {self.job_id} ended{state} before its Jupyter server answered.",
                            await self._log_tail(),
                        )
                    job_state = None
                if job_state is None:
                    job_state = asyncio.ensure_future(self._refresh_after(self.slurm_start_check_interval))
                waiting = [job_state]
                if self._port_reported.is_set():
                    if probe is None and now >= next_probe:
                        probe = asyncio.ensure_future(self._probe_server(client, deadline - now))
                    if probe is not None:
                        waiting.append(probe)
                elif port_wait is None:
                    port_wait = asyncio.ensure_future(self._port_reported.wait())
                if port_wait is not None:
                    waiting.append(port_wait)
                    if port_wait.done():
                        port_wait = None
                timeout = max(0.0, next_probe - now) if probe is None and self._port_reported.is_set() else 1.0
                await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (job_state, probe, port_wait):
                if task is not None:
                    task.cancel()

    async def _refresh_after(self, delay: float) -> None:
        """A fresh poller round `delay` seconds from now (a look at the job while its server starts)."""
        await asyncio.sleep(delay)
        await self.poller.refresh()

    async def _probe_server(self, client: AsyncHTTPClient, timeout: float) -> server_identity.Answer:
        """One check of the server at ip:port: its identity proof, or (verify_server_identity off)
        any HTTP answer."""
        base = f"http://{fmt_ip_url(self.ip)}:{self.port}{self.server.base_url if self.server else '/'}"
        if self.verify_server_identity:
            return await server_identity.check(client, base, self.api_token, self.port, min(timeout, 30.0))
        try:
            await client.fetch(HTTPRequest(f"{base}api", connect_timeout=1, request_timeout=min(timeout, 30.0)),
                               raise_error=True)
        except HTTPClientError as e:
            return server_identity.Answer(answered=e.code != 599, genuine=e.code != 599)
        except OSError:
            return server_identity.Answer(answered=False)
        return server_identity.Answer(answered=True, genuine=True)

    def _impostor(self, detail: str) -> SpawnFailure:
        where = f"{self.job_host or self.ip}:{self.port}"
        self.log.warning("rcsc3: job %s of %s reported port %s, but %s answered there with %s: not the student's"
                         " server (port squatted by another process?)", self.job_id, self._log_name, self.port,
                         where, detail)
        return SpawnFailure(
            f"Job {self.job_id} reported port {self.port}, but what answers on {where} is not your Jupyter server "
            f"({detail}): another program holds that port. The job was cancelled; please start again, and tell "
            "your course staff if it happens again."
        )

    def _on_job_gone(self, last: JobInfo | None) -> None:
        # The job ended on its own (walltime, scancel from a terminal, node failure):
        # remember how, and tell the hub now instead of at its next poll.
        if self._spawn_pending or self._stop_pending:
            return
        if last is not None:
            self._record_end(last.state, last.reason, last.end_time)
        asyncio.ensure_future(self.poll_and_notify())

    def _final_state(self) -> str:
        """" (FAILED)": Slurm's last word on a job it no longer lists ("" if it said none)."""
        last = self.poller.last_seen(self.job_id)
        return f" ({last.state})" if last is not None else ""

    def _record_end(self, state: str, reason: str = "", at: str = "") -> None:
        self.last_end = {"state": state, "reason": reason, "at": at or time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.log.info("rcsc3: job %s of %s ended: %s %s", self.job_id, self._log_name, state, reason)

    def describe_last_end(self) -> str:
        """Why the student's last server stopped, for their next visit ("" if nothing to say)."""
        return describe_end(self.last_end)

    def time_left(self) -> str:
        """The running job's time left (Slurm's EndTime), e.g. "1 h 12 min left", for the hub's home page."""
        info = self.poller.get(self.job_id) if self.job_id else None
        return describe_time_left(info.end_time) if isinstance(info, JobInfo) and info.running else ""

    # ------------------------------------------------------------ poll / stop / state
    async def poll(self) -> int | None:
        job_id = self.job_id
        if not job_id:
            return 0
        info = self.poller.get(job_id)
        if info is None:
            # first look after a hub restart, or Slurm was unreachable: ask now
            self.poller.watch(job_id, self._on_job_gone)
            await self.poller.refresh()
            if not self.job_id:
                return 1  # the round found it gone, and its callback's poll has cleared the state already
            info = self.poller.get(job_id)
        if info is None or (isinstance(info, JobInfo) and info.active):
            return None  # running, pending, or Slurm unknown: keep the server
        self.log.info("rcsc3: job %s of %s is gone", job_id, self._log_name)
        self.poller.unwatch(job_id)
        self.clear_state()
        return 1

    async def _cancel_quietly(self, now: bool = False) -> None:
        try:
            await self.stop(now=now)
        except Exception:
            self.log.exception("rcsc3: cancelling job %s failed", self.job_id)

    async def stop(self, now: bool = False) -> None:
        """SIGTERM the server, SIGKILL the whole job after a short grace, and wait until Slurm lists it no more.

        A plain scancel starts Slurm's job termination, which with proctrack/linuxproc re-checks
        for survivors only once a second; signalling the server first and killing the job only if
        it is still there keeps a stop under a second. If slurmctld does not answer, the scancel is
        retried in the background until it does: the job is never left running unowned.
        """
        if not self.job_id:
            return
        job_id = self.job_id
        self._note_idle_stop()
        prefix = self._prefix()
        cancel = [*prefix, "scancel", job_id]
        kill = [*prefix, "scancel", "--signal=KILL", job_id]
        info = self.poller.get(job_id)
        running = isinstance(info, JobInfo) and info.running
        self.poller.watch(job_id)
        # A pending (or unknown) job is simply cancelled; a running one gets SIGTERM first.
        first = [*prefix, "scancel", "--batch", "--signal=TERM", job_id] if running else cancel
        res = await run_command(first, timeout=15)
        if not res.ok and "Invalid job id" not in res.stderr:
            self.log.warning("rcsc3: %s failed (%s); retrying in the background", " ".join(first[len(prefix):]), res.describe())
            self.poller.cancel_later(job_id, cancel)
        t0 = time.monotonic()
        escalated = not running
        while time.monotonic() - t0 < self.stop_timeout:
            if not escalated and (now or time.monotonic() - t0 >= self.stop_grace_period):
                escalated = True
                res = await run_command(kill, timeout=15)
                if not res.ok and "Invalid job id" not in res.stderr:
                    # e.g. the job went back to pending: a plain cancel always applies
                    res = await run_command(cancel, timeout=15)
                if not res.ok and "Invalid job id" not in res.stderr and "already completing" not in res.stderr:
                    self.poller.cancel_later(job_id, cancel)
            if now:
                return
            await self.poller.refresh()
            if self.poller.get(job_id) is GONE:
                self.poller.unwatch(job_id)
                return
            if not self.poller.known:
                self.poller.cancel_later(job_id, cancel)
        self.log.warning("rcsc3: job %s still listed %.0f s after scancel", job_id, self.stop_timeout)

    def _note_idle_stop(self) -> None:
        """A server stopped after more than its profile's idle_timeout without activity was culled:
        say so on the student's next visit (the culler gives the GPU back to the class)."""
        profile = next((p for p in self.profiles if p.slug == (self.user_options or {}).get("profile")), None)
        last = self.orm_spawner.last_activity if self.orm_spawner is not None else None
        if profile is None or last is None:
            return
        idle = time.time() - (last.timestamp() if last.tzinfo else last.replace(tzinfo=UTC).timestamp())
        if idle >= profile.idle_timeout:
            self._record_end("IDLE", f"{idle / 60:.0f} min without activity")

    def _persist_state(self) -> None:
        """Save the job id before the spawn finishes (JupyterHub saves state only afterwards)."""
        if self.orm_spawner is None:
            return
        self.orm_spawner.state = self.get_state()
        session = object_session(self.orm_spawner)
        if session is not None:
            session.commit()

    def get_state(self) -> dict:
        state = super().get_state()
        if self.job_id and self.job_host:
            state["job_host"] = self.job_host
        if self.last_end:
            state["last_end"] = self.last_end  # kept after a stop: clear_state leaves it
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.job_host = state.get("job_host", "")
        self.last_end = state.get("last_end") or {}

    def clear_state(self) -> None:
        super().clear_state()
        self.job_host = ""

    # ------------------------------------------------------------ progress
    async def progress(self):
        shown = 0
        while True:
            while shown < len(self._progress_events):
                yield self._progress_events[shown]
                shown += 1
            if self._progress_changed is None:
                return
            self._progress_changed.clear()
            await self._progress_changed.wait()

