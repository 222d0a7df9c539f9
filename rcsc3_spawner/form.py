"""The spawn options form: one card per profile, and fields bounded by live Slurm limits.

Field names are the REST API's `user_options` names. Bounds are printed next to
each field and enforced again by the hub (the browser's min/max are a courtesy).
A little script moves the fields' bounds and defaults when another profile is
picked and hides the GPU field for profiles without GPUs.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .options import bounds_for
from .profiles import Profile, human_walltime
from .slurm.cluster_info import ClusterInfo

STYLE = """
<style>
.rcsc3-profiles { display: grid; gap: .6em; margin-bottom: 1em; }
.rcsc3-profile { display: block; border: 1px solid #ccc; border-radius: 6px; padding: .7em 1em; cursor: pointer; }
.rcsc3-profile:has(input:checked) { border-color: #f37524; box-shadow: 0 0 0 2px #f3752433; }
.rcsc3-profile .rcsc3-desc { color: #555; font-size: 90%; margin: .2em 0 0 1.6em; }
.rcsc3-fields { display: grid; grid-template-columns: max-content 9em auto; gap: .5em 1em; align-items: center; }
.rcsc3-fields .rcsc3-hint { color: #666; font-size: 90%; }
.rcsc3-notice { color: #8a6d3b; background: #fcf8e3; padding: .4em .8em; border-radius: 4px; }
</style>
"""

SCRIPT = """
<script>
(function () {
  var bounds = %s;
  function apply(slug) {
    var b = bounds[slug];
    if (!b) return;
    ["gpus", "cpus", "memory"].forEach(function (f) {
      var input = document.getElementById("rcsc3-" + f);
      input.min = b[f].min; input.max = b[f].max; input.value = b[f].default;
      document.getElementById("rcsc3-" + f + "-hint").textContent = b[f].hint;
    });
    var wt = document.getElementById("rcsc3-walltime");
    wt.value = b.walltime.default;
    document.getElementById("rcsc3-walltime-hint").textContent = b.walltime.hint;
    var gpuRow = document.querySelectorAll(".rcsc3-gpu-row");
    var noGpu = b.gpus.max === 0;
    gpuRow.forEach(function (el) { el.style.display = noGpu ? "none" : ""; });
    document.getElementById("rcsc3-gpus").disabled = noGpu;
  }
  document.querySelectorAll("input[name=profile]").forEach(function (r) {
    r.addEventListener("change", function () { apply(r.value); });
  });
  var checked = document.querySelector("input[name=profile]:checked");
  if (checked) {
    // keep values the page was rendered with (the student's last choice)
    var keep = {};
    ["gpus", "cpus", "memory", "walltime"].forEach(function (f) { keep[f] = document.getElementById("rcsc3-" + f).value; });
    apply(checked.value);
    Object.keys(keep).forEach(function (f) { document.getElementById("rcsc3-" + f).value = keep[f]; });
  }
})();
</script>
"""


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
) -> str:
    """HTML for JupyterHub's spawn page; `previous` pre-fills the student's last valid choice."""
    bounds = profile_bounds(profiles, cluster)
    slugs = [p.slug for p in profiles]
    chosen = previous.get("profile") if previous.get("profile") in slugs else slugs[0]
    b = bounds[chosen]

    def value(field: str) -> str:
        v = previous.get(field) if previous.get("profile") == chosen else None
        return escape(str(v if v is not None else b[field]["default"]))

    cards = []
    for p in profiles:
        checked = " checked" if p.slug == chosen else ""
        cards.append(
            f'<label class="rcsc3-profile"><input type="radio" name="profile" value="{escape(p.slug)}"{checked}> '
            f"<strong>{escape(p.display_name)}</strong>"
            f'<div class="rcsc3-desc">{escape(p.description)}</div></label>'
        )
    notice = ""
    if cluster is None:
        notice = (f'<p class="rcsc3-notice">Slurm did not answer ({escape(slurm_error or "no reply")}); '
                  "limits below are the site's defaults.</p>")
    gpu_hidden = ' style="display:none"' if b["gpus"]["max"] == 0 else ""
    gpu_disabled = " disabled" if b["gpus"]["max"] == 0 else ""
    fields = f"""
<div class="rcsc3-fields">
  <label for="rcsc3-gpus" class="rcsc3-gpu-row"{gpu_hidden}>GPUs</label>
  <input class="form-control rcsc3-gpu-row" id="rcsc3-gpus" name="gpus" type="number" step="1" min="{b['gpus']['min']}" max="{b['gpus']['max']}" value="{value('gpus')}"{gpu_hidden}{gpu_disabled}>
  <span class="rcsc3-hint rcsc3-gpu-row" id="rcsc3-gpus-hint"{gpu_hidden}>{escape(b['gpus']['hint'])}</span>
  <label for="rcsc3-cpus">CPU cores</label>
  <input class="form-control" id="rcsc3-cpus" name="cpus" type="number" step="1" min="{b['cpus']['min']}" max="{b['cpus']['max']}" value="{value('cpus')}">
  <span class="rcsc3-hint" id="rcsc3-cpus-hint">{escape(b['cpus']['hint'])}</span>
  <label for="rcsc3-memory">Memory (GiB)</label>
  <input class="form-control" id="rcsc3-memory" name="memory" type="number" step="1" min="{b['memory']['min']}" max="{b['memory']['max']}" value="{value('memory')}">
  <span class="rcsc3-hint" id="rcsc3-memory-hint">{escape(b['memory']['hint'])}</span>
  <label for="rcsc3-walltime">Walltime</label>
  <input class="form-control" id="rcsc3-walltime" name="walltime" type="text" required pattern="[0-9]{{1,3}}:[0-5][0-9]" value="{value('walltime')}">
  <span class="rcsc3-hint" id="rcsc3-walltime-hint">{escape(b['walltime']['hint'])}</span>
</div>"""
    script = SCRIPT % json.dumps(bounds).replace("</", "<\\/")
    return STYLE + notice + '<div class="rcsc3-profiles">' + "".join(cards) + "</div>" + fields + script
