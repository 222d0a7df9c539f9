"""The spawn options form: one card per profile the student may use, fields bounded by live Slurm limits.

The HTML is a Jinja template (templates/form.html) that a site can replace or extend
(`c.RcSC3Spawner.form_template`, `form_template_paths`), as kubespawner's profile form. Field names
are the REST API's `user_options` names; the bounds printed next to each field are enforced again
by the hub (the browser's min/max are a courtesy).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PrefixLoader, select_autoescape

from .options import bounds_for
from .profiles import Profile, human_walltime
from .slurm.cluster_info import ClusterInfo

OWN_TEMPLATES = str(resources.files("rcsc3_spawner") / "templates")


@lru_cache(maxsize=8)
def environment(site_paths: tuple[str, ...] = ()) -> Environment:
    """Site directories first; rcsc3's own templates also as `rcsc3/<name>` (to extend them)."""
    loader = ChoiceLoader([FileSystemLoader(list(site_paths)), PrefixLoader({"rcsc3": FileSystemLoader(OWN_TEMPLATES)}),
                           FileSystemLoader(OWN_TEMPLATES)])
    return Environment(loader=loader, autoescape=select_autoescape(default=True, default_for_string=True))


def _hint(lo: int, hi: int, unit: str = "") -> str:
    return f"{lo}{unit}" if lo == hi else f"{lo} to {hi}{unit}"


def profile_bounds(profiles: list[Profile], cluster: ClusterInfo | None) -> dict[str, dict[str, Any]]:
    out = {}
    for p in profiles:
        b = bounds_for(p, cluster)
        out[p.slug] = {
            "gpus": {"min": b.gpus.min, "max": b.gpus.max, "default": b.gpus.default, "hint": _hint(b.gpus.min, b.gpus.max)},
            "cpus": {"min": b.cpus.min, "max": b.cpus.max, "default": b.cpus.default,
                     "hint": _hint(b.cpus.min, b.cpus.max) + " (1 for the notebook, the rest for ipyparallel engines)"},
            "memory": {"min": b.memory_gb.min, "max": b.memory_gb.max, "default": b.memory_gb.default,
                       "hint": _hint(b.memory_gb.min, b.memory_gb.max, " GiB")},
            "walltime": {"default": human_walltime(b.walltime.default),
                         "hint": f"H:MM, {human_walltime(b.walltime.min)} to {human_walltime(b.walltime.max)}"},
        }
    return out


def render_options_form(
    profiles: list[Profile],
    cluster: ClusterInfo | None,
    previous: dict[str, Any],
    slurm_error: str = "",
    template: str = "form.html",
    site_paths: tuple[str, ...] = (),
    last_end: str = "",
) -> str:
    """HTML for JupyterHub's spawn page; `previous` pre-fills the student's last valid choice, and
    `last_end` says why their last server stopped (a time limit, the idle culler, a node failure)."""
    bounds = profile_bounds(profiles, cluster)
    slugs = [p.slug for p in profiles]
    chosen = previous.get("profile") if previous.get("profile") in slugs else slugs[0]
    values = {field: (previous.get(field) if previous.get("profile") == chosen and previous.get(field) is not None
                      else bounds[chosen][field]["default"]) for field in ("gpus", "cpus", "memory", "walltime")}
    return environment(tuple(site_paths)).get_template(template).render(
        profiles=profiles, bounds=bounds, chosen=chosen, values=values,
        slurm_error=None if cluster is not None else slurm_error, last_end=last_end,
    )
