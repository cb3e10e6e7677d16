"""The `roampos` command: one entry point, subcommands loaded lazily."""
import argparse
import importlib
import sys

__all__ = ["main", "COMMANDS"]

# name -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "vterm": ("roampos.vterm.process", "run a virtual terminal on a pty"),
    "image": ("roampos.image", "build a littlefs flash image for a board"),
    "run": ("roampos.runall", "run a virtual terminal with its host (embedded broker, SQLite)"),
    "host": ("roampos.host.supervisor", "run the acquirer host"),
    "terminal": ("roampos.host.terminals", "manage terminals, region grants and blocks"),
    "report": ("roampos.host.report", "settlement and clearing reports"),
    "provision": ("roampos.provision", "load a parameter set into a terminal through its console"),
    "screen": ("roampos.screen", "save a terminal's screen as PNG"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="roampos", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    p = argparse.ArgumentParser(prog="roampos " + argv[0], description=COMMANDS[argv[0]][1])
    module.add_arguments(p)
    args = p.parse_args(argv[1:])
    return module.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
