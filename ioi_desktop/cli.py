"""Command line: ``ioi-desktop`` opens the app; subcommands run headless.

Each subcommand lives in ``ioi_desktop/commands/<name>.py`` (``-`` in the
command name is ``_`` in the module's) and provides
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Expected failures
(:class:`~ioi_desktop.core.errors.IOIError`) print one line on stderr and exit 2;
unexpected ones (bugs) print one line naming the log file that holds the
traceback and exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ioi_desktop import __version__
from ioi_desktop.core.errors import IOIError

COMMANDS = ("models", "pairs", "analyze", "ablate", "path-patch", "circuit", "reproduce-notebook", "export")


def _build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="ioi-desktop",
        description="Circuit analysis of language models on Indirect Object Identification. "
        "With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ioi_desktop.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ioi_desktop.commands.{name.replace('-', '_')}":
                raise
            continue
        command_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("--smoke") or argv[0] == "--screenshot":
        from ioi_desktop.launch import launch

        return launch(argv)
    parser, modules = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(modules[args.command].run(args) or 0)
    except IOIError as error:
        print(f"ioi-desktop {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ioi-desktop {args.command}: interrupted.", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"ioi-desktop {args.command}: the machine ran out of memory. "
              "Use fewer or shorter prompts, a smaller model, or a smaller --batch-size.", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: keep the traceback for the report, not on screen
        import traceback

        from ioi_desktop.core.error_log import write_error_log

        log = write_error_log(f"ioi-desktop {args.command}", traceback.format_exc())
        where = f" Details were written to {log}; please include them in a bug report." if log else ""
        print(f"ioi-desktop {args.command}: unexpected error ({type(error).__name__}: {error}).{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
