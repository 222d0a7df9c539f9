"""The `rcsc3` command: a thin dispatcher over the `rcsc3.commands` entry points.

Subcommands live with the code they belong to (`lab` on the hub/admin side,
`doctor` on the node side) and are found by entry point, so this module imports
neither side until a subcommand is chosen.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points


def _commands() -> dict:
    return {ep.name: ep for ep in entry_points(group="rcsc3.commands")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rcsc3 COMMAND [ARGS...]\n\ncommands:")
        for name in sorted(commands):
            print(f"  {name}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in commands:
        print(f"rcsc3: unknown command {name!r}; choose one of: {', '.join(sorted(commands))}", file=sys.stderr)
        return 2
    return int(commands[name].load()(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
