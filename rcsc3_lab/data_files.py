"""Install setup.cfg's `[options.data_files]` into a venv: what `pip install -e` leaves out.

`pip install .` puts the data files (example notebooks, ipyparallel's and JupyterLab's defaults,
the JupyterLab plugin) under the venv's prefix; an editable install does not. `make install`
runs this after an editable install, so setup.cfg stays the one list of them.

    python -m rcsc3_lab.data_files SETUP_CFG PREFIX
"""

from __future__ import annotations

import configparser
import shutil
import sys
from pathlib import Path


def data_files(setup_cfg: Path) -> dict[str, list[str]]:
    """`{target dir relative to the prefix: [source paths relative to setup.cfg]}`."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    section = parser["options.data_files"] if parser.has_section("options.data_files") else {}
    return {target: [line.strip() for line in value.splitlines() if line.strip()] for target, value in section.items()}


def expand(root: Path, source: str) -> list[Path]:
    """The files a data_files entry names: itself, or what its glob matches (as setuptools expands it)."""
    if not any(c in source for c in "*?["):
        return [root / source]
    matches = sorted(p for p in root.glob(source) if p.is_file())
    if not matches:  # setuptools would install nothing, silently: say so
        raise FileNotFoundError(f"setup.cfg's data_files pattern {source} matches no file (not built yet?)")
    return matches


def install(setup_cfg: Path, prefix: Path) -> list[Path]:
    """Copy every data file to its place under `prefix` (mode 644, directories 755); returns the copies."""
    root = setup_cfg.parent
    installed = []
    for target, patterns in data_files(setup_cfg).items():
        directory = prefix / target
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        for source in (path for pattern in patterns for path in expand(root, pattern)):
            destination = directory / source.name
            shutil.copyfile(source, destination)
            destination.chmod(0o644)
            installed.append(destination)
    return installed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for path in install(Path(args[0]), Path(args[1])):
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
