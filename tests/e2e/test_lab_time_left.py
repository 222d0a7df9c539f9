"""rcsc3's JupyterLab plugin (rcsc3-jupyterlab:time-left): the status bar shows the Slurm job's time left, and
JupyterLab warns before the end.

Real hub, real Slurm job, real JupyterLab in headless Chromium (the plugin asks rcsc3/api/job with the
hub's cookie and JupyterLab's XSRF header); the admin shortens the job with `scontrol update`, as root.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime

import requests
from e2e_browser import UserBrowser, by_text
from e2e_journey import Steps, job_ids, reset_workspace
from hubproc import wait_until

#: the status bar item: [its text, data-seconds-left, data-end-time, tooltip] once it shows
ITEM = ("(() => { const e = document.querySelector('.jp-StatusBar-Widget .rcsc3-TimeLeft');"
        " return e && e.offsetParent !== null && e.dataset.secondsLeft"
        " && [e.innerText.trim(), Number(e.dataset.secondsLeft), e.dataset.endTime, e.title]; })()")
TEXT = re.compile(r"(?:(\d+) h )?(\d+) min left")


def slurm_end(job: str) -> datetime:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=20, check=True)
    local = re.search(r"\bEndTime=(\S+)", out.stdout).group(1)  # the local time, without a zone
    return datetime.strptime(local, "%Y-%m-%dT%H:%M:%S").astimezone(UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def shown_minutes(text: str) -> int:
    match = TEXT.fullmatch(text)
    assert match, f"the status bar says {text!r}"
    return int(match.group(1) or 0) * 60 + int(match.group(2))


async def test_the_status_bar_shows_slurms_time_left_and_jupyterlab_warns_before_the_end(idle, shots):
    hub, user = idle, "student1"
    reset_workspace(user)
    async with UserBrowser() as browser:
        page = await browser.new_page()
        await page.viewport()
        steps = Steps(hub.url, user, shots=shots)
        try:
            await steps.login(page)
            jobs = job_ids(await steps.spawn(page, "cpu"))
            hub.started_jobs |= jobs
            [job] = jobs

            # the status bar: the time to Slurm's EndTime, in hours and minutes (the cpu profile's 1:00)
            (text, left, end_time, title), _ = await page.wait_for(ITEM, 60)
            end = slurm_end(job)
            assert end_time == iso(end)
            expected = (end - datetime.now(UTC)).total_seconds()
            assert abs(left - expected) < 20 and 55 * 60 < left <= 60 * 60, (left, expected)
            assert shown_minutes(text) == int(left / 60 + 0.5), text  # to the nearest minute
            assert f"Slurm job {job} on " in title and "partition cpu" in title, title
            await steps.shot(page, "status-bar")

            # the admin shortens the job to ~8 minutes: the server tells it within a refresh (~30 s) ...
            elapsed = subprocess.run(["squeue", "-h", "-j", job, "-o", "%M"], capture_output=True, text=True,
                                     timeout=20, check=True).stdout.strip()
            minutes, seconds = (int(x) for x in elapsed.split(":")[-2:])
            subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={minutes + 1 + 8}"], check=True,
                           capture_output=True, timeout=30)
            new_end = iso(slurm_end(job))
            token = hub.login(user).token
            api = f"{hub.url}/user/{user}/rcsc3/api/job"
            wait_until(lambda: requests.get(api, headers={"Authorization": f"token {token}"}, timeout=30)
                       .json()["end_time"] == new_end, 60, "the API to show the new end", 1)
            # ... meanwhile the open page counted down on its own (redrawn every 15 s)
            _, later, _, _ = await page.evaluate(ITEM)
            assert later < left - 10, (left, later)

            # ... and a page opened now shows it, with the 10-minute warning
            await page.goto(f"{hub.url}/user/{user}/lab", timeout=60)
            with_new_end = f"(() => {{ const i = {ITEM}; return i && i[2] === '{new_end}' && i; }})()"
            (text, left, end_time, _), _ = await page.wait_for(with_new_end, 60)
            assert 6 <= shown_minutes(text) <= 9, text
            toast, _ = await page.wait_for(f"({by_text('.jp-toast-message', 'save your work')} || {{}}).innerText", 30)
            # the end in the student's own clock time, and the minutes counted as the status bar counts them
            clock = await page.evaluate(f"new Date('{new_end}').toLocaleTimeString([], {{hour: '2-digit', minute: '2-digit'}})")
            match = re.fullmatch(rf"This session ends at {re.escape(clock)} \((\d+) minutes left\): save your work\.",
                                 toast.strip())
            assert match and abs(int(match.group(1)) - shown_minutes(text)) <= 1, (toast, text)
            await page.wait_for("!!document.querySelector('.jp-LauncherCard')", 30)
            await steps.shot(page, "warning")
        except Exception:
            await steps.shot(page, "failed")
            raise
        finally:
            reset_workspace(user)
