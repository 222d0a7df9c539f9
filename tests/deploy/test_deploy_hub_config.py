"""Every hub_config/ JupyterHub configuration loads with JupyterHub's own loader and means what it says.

Each file is loaded by `JupyterHub.load_config_file` (the code path of `jupyterhub -f`);
the spawner and authenticator are resolved the way JupyterHub resolves them (entry point
names included), every `c.<Class>.<name>` must be a real configurable trait of that class
(traitlets silently keeps unknown names of classes it never instantiates), and the
spawner, authenticator and proxy are instantiated with the config with traitlets'
"not recognized" warnings turned into failures.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
from pathlib import Path

import pytest
from jupyterhub.app import JupyterHub
from jupyterhub.auth import Authenticator
from jupyterhub.proxy import ConfigurableHTTPProxy
from jupyterhub.spawner import Spawner
from traitlets.config import Configurable

from rcsc3_spawner.profiles import parse_profiles
from rcsc3_spawner.spawner import RcSC3Spawner

HUB_CONFIG = Path(__file__).resolve().parents[2] / "hub_config"
DEMO = HUB_CONFIG / "jupyterhub_config.py"
PRODUCTION = HUB_CONFIG / "production" / "jupyterhub_config.py"
HAVE_OAUTH = importlib.util.find_spec("oauthenticator") is not None

SITE_ENV = {
    "RCSC3_HUB_CONNECT_IP": "10.1.0.5",
    "RCSC3_HUB_IP": "10.1.0.5",
    "RCSC3_BIND_URL": "https://0.0.0.0:443",
}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def load(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[JupyterHub, list[str]]:
    for key in [k for k in os.environ if k.startswith("RCSC3_")]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = JupyterHub()
    capture = _Capture()
    app.log.addHandler(capture)
    app.log.setLevel(logging.DEBUG)
    app.load_config_file(str(path))
    return app, capture.messages


def configurable_classes(app: JupyterHub) -> dict[str, type[Configurable]]:
    """Config section name -> class, for every class these configs may configure."""
    classes: list[type[Configurable]] = [JupyterHub, ConfigurableHTTPProxy, Spawner, Authenticator]
    for cls in (app.spawner_class, app.authenticator_class):
        classes += [k for k in cls.mro() if isinstance(k, type) and issubclass(k, Configurable)]
    return {cls.__name__: cls for cls in classes}


def assert_every_setting_exists(app: JupyterHub) -> None:
    known = configurable_classes(app)
    problems = []
    for section, values in app.config.items():
        cls = known.get(section)
        if cls is None:
            problems.append(f"c.{section}: not a class JupyterHub, the proxy, the spawner or the authenticator knows")
            continue
        traits = cls.class_traits(config=True)
        problems += [f"c.{section}.{name}: not a setting of {cls.__name__}" for name in values if name not in traits]
    assert not problems, "\n".join(problems)


def instantiate_without_warnings(app: JupyterHub) -> None:
    """Build the configured objects as the hub does; traitlets warns about unknown names then."""
    capture = _Capture()
    loggers = [logging.getLogger(n) for n in ("traitlets", "JupyterHub")]
    for lg in loggers:
        lg.addHandler(capture)
    try:
        spawner = app.spawner_class(config=app.config)
        authenticator = app.authenticator_class(config=app.config)
        ConfigurableHTTPProxy(config=app.config, app=app)
        for obj in (spawner, authenticator):
            obj.log.addHandler(capture)
    finally:
        for lg in loggers:
            lg.removeHandler(capture)
    assert not [m for m in capture.messages if "not recognized" in m], capture.messages
    assert isinstance(spawner, RcSC3Spawner)
    # the profiles are valid (the spawner validates them on assignment; parse again to be explicit)
    assert parse_profiles(spawner.profiles)


@pytest.mark.parametrize("path", [DEMO, PRODUCTION], ids=["demo", "production"])
def test_config_loads_and_resolves(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, messages = load(path, SITE_ENV, monkeypatch)
    assert any("Loaded config file" in m for m in messages), messages
    assert not [m for m in messages if "not recognized" in m or "Error" in m], messages
    assert app.spawner_class is RcSC3Spawner
    assert app.cleanup_servers is False
    assert issubclass(app.authenticator_class, Authenticator)
    assert app.config.JupyterHub.spawner_class == "rcsc3"  # by entry point name, as the README says
    # the spawn page comes right after "Start" (README: "The spawn form and the REST API")
    assert app.tornado_settings["slow_spawn_timeout"] == 0.3
    assert_every_setting_exists(app)
    instantiate_without_warnings(app)


def test_production_key_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = load(PRODUCTION, SITE_ENV, monkeypatch)
    from jupyterhub.auth import PAMAuthenticator

    from rcsc3_spawner.course_groups import CourseGroupsPAMAuthenticator

    assert app.authenticator_class is CourseGroupsPAMAuthenticator and issubclass(app.authenticator_class, PAMAuthenticator)
    # jobs on the nodes reach the hub API at the cluster address, never at loopback
    assert app.hub_connect_ip == "10.1.0.5" and app.hub_ip == "10.1.0.5" and app.hub_port == 8081
    assert app.bind_url == "https://0.0.0.0:443"
    assert app.ssl_cert and app.ssl_key
    assert app.internal_ssl is False
    pam = PAMAuthenticator(config=app.config)
    assert pam.open_sessions is False  # the hub is not root
    assert pam.allowed_groups == {"students"} and pam.admin_groups == {"teachers"}
    spawner = RcSC3Spawner(config=app.config)
    assert spawner.node_venv == "/opt/rcsc3/venv"
    assert spawner.submit_prefix == ["sudo", "-u", "{username}", "--"]  # what /etc/sudoers.d/rcsc3 allows
    assert spawner.ip == ""  # at the node's Slurm address, where the hub host reaches it, and only there
    assert spawner.pending_timeout < spawner.start_timeout  # the student gets Slurm's reason, not a bare timeout
    assert [p.partition for p in spawner.profiles] == ["interactive", "interactive"]
    assert spawner.profiles[0].gpus.default >= 1


def test_production_courses_become_groups_and_teacher_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = load(PRODUCTION, {**SITE_ENV, "RCSC3_COURSES": "viz2026, hpc2026"}, monkeypatch)
    roles = {r["name"]: r for r in app.load_roles}
    assert roles["viz2026-teacher"]["groups"] == ["viz2026-teachers"]
    assert "servers!group=viz2026" in roles["viz2026-teacher"]["scopes"]
    assert all("!group=viz2026" in s for s in roles["viz2026-teacher"]["scopes"] if s != "admin-ui")
    from rcsc3_spawner.course_groups import CourseGroupsPAMAuthenticator

    auth = CourseGroupsPAMAuthenticator(config=app.config)
    assert auth.manage_groups is True
    pattern = re.compile(auth.course_groups)
    assert pattern.fullmatch("viz2026") and pattern.fullmatch("hpc2026-teachers") and not pattern.fullmatch("students")
    assert [s["name"] for s in app.services] == ["idle-culler"] and app.last_activity_interval == 0


def test_production_defaults_without_site_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no RCSC3_* variables the file still loads; the hub API address is this host's name."""
    app, _ = load(PRODUCTION, {}, monkeypatch)
    assert app.hub_connect_ip == socket.getfqdn()
    assert app.cleanup_servers is False


def test_production_http_behind_reverse_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = load(PRODUCTION, {**SITE_ENV, "RCSC3_BIND_URL": "http://127.0.0.1:8000"}, monkeypatch)
    assert app.bind_url == "http://127.0.0.1:8000"
    assert not app.ssl_cert and not app.ssl_key


def test_production_rejects_unknown_authenticator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RCSC3_AUTHENTICATOR", "dummy")
    app = JupyterHub()
    with pytest.raises(ValueError, match="RCSC3_AUTHENTICATOR"):
        app.load_config_file(str(PRODUCTION))


@pytest.mark.skipif(not HAVE_OAUTH, reason="oauthenticator is not installed (pip install oauthenticator)")
def test_production_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    app, messages = load(PRODUCTION, {**SITE_ENV, "RCSC3_AUTHENTICATOR": "generic-oauth"}, monkeypatch)
    from oauthenticator.generic import GenericOAuthenticator

    assert app.authenticator_class is GenericOAuthenticator
    assert_every_setting_exists(app)
    instantiate_without_warnings(app)
    auth = GenericOAuthenticator(config=app.config)
    assert auth.username_claim == "preferred_username"  # the hub user name is the unix account
    assert auth.allowed_groups == {"students"}
