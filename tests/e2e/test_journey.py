"""The student's journey in a real browser, two students side by side, and the teacher's admin page.

What a person does: type into the login form and press "Sign in", pick the GPU
profile and press Start, watch the spawn page, wait for JupyterLab's launcher,
click the "Remote Desktop" tile and follow the tab it opens, see the xfce
desktop (asserted on the noVNC canvas's pixels), open the example notebooks'
folder, type an ipyparallel cell and press Shift+Enter, read its output, and
stop the server from the hub's control panel. Then nothing of it may be left:
no Slurm job of the student and no desktop process (supervisor, Xvnc, xfce).
Screenshots of each step go to artifacts/e2e/<test>/.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from e2e_browser import CANVAS_COLOURS, UserBrowser, UserPage, by_css
from e2e_journey import (
    EXAMPLES,
    MIN_COLOURS,
    PROFILE_LABEL,
    RESULT,
    Steps,
    cleaned_up,
    connect_as,
    desktop_processes,
    job_ids,
    leftovers,
    remove_notebook,
    vnc_sockets,
)
from hubproc import wait_until


async def desktop_at_viewport(desktop: UserPage) -> int:
    """Give the desktop tab the screenshots' 1280x800 viewport; noVNC resizes the X screen to it (bounded wait)."""
    await desktop.viewport()
    colours, _ = await desktop.wait_for(
        "(() => { const c = document.querySelector('#screen canvas'), s = document.querySelector('#screen');"
        " return c.width === s.clientWidth && c.height === s.clientHeight && s.clientWidth === 1280; })()"
        f" && (({CANVAS_COLOURS}) > {MIN_COLOURS})"
        f" && ({CANVAS_COLOURS})", 30)
    return colours


def assert_cleaned_up(user: str, timeout: float = 60) -> None:
    try:
        wait_until(lambda: cleaned_up(user), timeout, f"{user}'s job and desktop processes to be gone")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; left: {leftovers(user)}") from None


async def test_student_journey(idle, shots):
    hub, user = idle, "student1"
    steps = Steps(hub.url, user, shots=shots)
    async with UserBrowser() as browser:
        page = await browser.new_page()
        await page.viewport()
        try:
            await steps.login(page)
            messages = await steps.spawn(page)
            hub.started_jobs |= job_ids(messages)
            assert steps.seen["profile_label"].strip().startswith(PROFILE_LABEL)
            assert any(m.startswith("Submitting to Slurm (interactive partition: 1 GPU") for m in messages), messages
            assert any(re.search(r"Job \d+ (pending|running on)", m) for m in messages), messages
            assert job_ids(messages), messages
            # no "build recommended" check (rcsc3's labconfig/page_config.json): the page never asks for it
            page_config = "JSON.parse(document.getElementById('jupyter-config-data').textContent)"
            assert await page.evaluate(f"{page_config}.buildCheck") is False
            # the Extension Manager lists extensions but offers no install (rcsc3's jupyter_lab_config.json)
            assert await page.evaluate(f"{page_config}.extensionManager.can_install") is False
            assert not await page.evaluate(
                "performance.getEntriesByType('resource').some(e => e.name.includes('/lab/api/build'))")

            desktop, colours = await steps.open_desktop(browser, page)
            assert colours > MIN_COLOURS
            assert steps.seen["desktop_url"].startswith(f"{hub.url}/user/{user}/desktop/")
            assert str(steps.seen["desktop_status"]).startswith("Connected"), steps.seen["desktop_status"]
            await desktop_at_viewport(desktop)
            png = await steps.shot(desktop, "05-desktop")
            assert png is not None and png.stat().st_size > 20000
            assert any("Xvnc" in p for p in desktop_processes(user)), desktop_processes(user)
            # the GPU profile prestarts the desktop from rcsc3-singleuser, while the server imports;
            # the page then used that same desktop: one supervisor, one Xvnc
            [job] = job_ids(messages)
            job_log = Path(f"/home/{user}/.rcsc3/logs/jupyter-{job}.log").read_text()
            assert "Remote Desktop starting alongside the server (prestart)" in job_log, job_log[-2000:]
            assert sum("rcsc3_proxy.desktop.supervisor" in p for p in desktop_processes(user)) == 1, desktop_processes(user)
            assert sum(p.split()[1].endswith(("Xvnc", "Xtigervnc")) for p in desktop_processes(user) if len(p.split()) > 1) == 1

            names = await steps.examples_listed(page)
            assert set(EXAMPLES) <= set(names), f"the example notebooks are not in ~/rcsc3-notebooks: {names}"
            _, output = await steps.run_cell(page)
            assert RESULT in output, output
            assert "srun" in output or "Slurm step" in output, output

            home = await steps.stop_from_home(browser, page)
            await steps.shot(home, "07-home-stopped")
            assert_cleaned_up(user)
        except Exception:
            await steps.shot(page, "failed")
            raise
        finally:
            remove_notebook(user, str(steps.seen.get("notebook", "")))


async def _student_with_desktop(hub, user: str, shots) -> tuple[UserBrowser, UserPage, UserPage, Steps]:
    browser = UserBrowser()
    await browser.__aenter__()
    page = await browser.new_page()
    await page.viewport()
    steps = Steps(hub.url, user, shots=shots / user)
    try:
        await steps.login(page)
        messages = await steps.spawn(page)
        hub.started_jobs |= job_ids(messages)
        desktop, colours = await steps.open_desktop(browser, page)
        assert colours > MIN_COLOURS, (user, colours)
        await desktop_at_viewport(desktop)
        await steps.shot(desktop, "05-desktop")
    except BaseException:
        await browser.__aexit__(None, None, None)
        raise
    return browser, page, desktop, steps


async def test_two_students_and_the_admin_page(idle, shots):
    hub = idle
    started = await asyncio.gather(*(_student_with_desktop(hub, u, shots) for u in ("student1", "student2")),
                                   return_exceptions=True)
    browsers = [s[0] for s in started if not isinstance(s, BaseException)]
    try:
        for s in started:
            if isinstance(s, BaseException):
                raise s
        (_, page1, desktop1, _), (_, page2, desktop2, _) = started
        # both desktops show pixels, each in its own student's URL space
        for user, desktop in (("student1", desktop1), ("student2", desktop2)):
            assert f"/user/{user}/desktop/" in await desktop.url()
            assert await desktop.evaluate(CANVAS_COLOURS) > MIN_COLOURS

        # neither browser session reaches the other's desktop: the hub answers 403, no canvas is shown
        for page, other in ((page2, "student1"), (page1, "student2")):
            await page.goto(f"{hub.url}/user/{other}/desktop/")
            await page.wait_for("document.readyState === 'complete' && !!document.body.innerText", 20)
            status, text = await page.nav_status(), await page.text()
            assert status == 403 and "permission" in text.lower(), (status, await page.url(), text[:300])
            assert not await page.evaluate("!!document.querySelector('canvas')")

        # neither student's processes reach the other's VNC socket
        sockets = {u: vnc_sockets(u) for u in ("student1", "student2")}
        assert all(sockets.values()), sockets
        for intruder, owner in (("student2", "student1"), ("student1", "student2")):
            for path in sockets[owner]:
                res = connect_as(intruder, path)
                assert res.stdout.strip() == "PermissionError", (intruder, path, res)

        # the teacher's admin page lists both servers; stopping student2's there cleans it up
        async with UserBrowser() as admin_browser:
            admin = await admin_browser.new_page()
            await admin.viewport()
            try:
                # the demo config sends admins straight to the admin page after login
                await Steps(hub.url, "teacher").login(admin, next_path="/hub/admin")
                for user in ("student1", "student2"):
                    await admin.wait_for(f"!!document.querySelector('tr[data-testid=user-row-{user}] .stop-button')", 30)
                await admin.screenshot(shots / "08-admin.png")
                await admin.click(by_css("tr[data-testid=user-row-student2] .stop-button"))
                await admin.wait_for("!!document.querySelector('tr[data-testid=user-row-student2] .start-button')", 90)
                await admin.wait_for("!!document.querySelector('tr[data-testid=user-row-student1] .stop-button')", 5)
                await admin.screenshot(shots / "09-admin-stopped-student2.png")
            except Exception:
                await admin.screenshot(shots / "failed-admin.png")
                raise
        assert_cleaned_up("student2")
        # student1's desktop is untouched
        assert any("Xvnc" in p for p in desktop_processes("student1"))
        assert await desktop1.evaluate("window.rcsc3Desktop.phase") == "connected"
    finally:
        for browser in browsers:
            await browser.__aexit__(None, None, None)
