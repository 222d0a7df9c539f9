"""rcsc3's additions to JupyterHub's own pages (the home page, "server not running"): the time a
student's session has left, and why the last one stopped. Both hub configs put TEMPLATE_PATH first
in `c.JupyterHub.template_paths`; each template extends JupyterHub's (`templates/<name>.html`)."""

from __future__ import annotations

from importlib import resources

TEMPLATE_PATH = str(resources.files("rcsc3_spawner") / "templates" / "hub")
