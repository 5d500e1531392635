"""The ``tilerunner`` command.

Each command is imported on first use (:class:`LazyGroup`, click's lazy-loading pattern):
``tilerunner --help`` lists the commands from :data:`COMMANDS` without importing any of them,
and ``tilerunner status`` imports what status needs, not the API, the models or GDAL.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass
from typing import Any

import click

from tilerunner import __version__
from tilerunner.cli.startup import starting

__all__ = ["COMMANDS", "CommandEntry", "LazyGroup", "cli", "main"]


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """Where a command lives (``"module:attribute"``) and its one-line help for the listing.

    ``summary`` is the first sentence of the command's docstring, as ``tilerunner --help``
    shows it (shortened to the terminal width); a test keeps the two equal.
    """

    target: str
    summary: str


COMMANDS: dict[str, CommandEntry] = {
    "cancel": CommandEntry(
        "tilerunner.cli.jobs:cancel",
        "Cancel JOB_ID, keeping what finished: workers let go of its regions within one lease "
        "period (``cancelling``), then serve's coordinator marks it ``cancelled``.",
    ),
    "demo": CommandEntry(
        "tilerunner.cli.demo:demo",
        "Detect people and buses with YOLOv3-tiny (COCO) in a 6144 x 4096 georeferenced scene.",
    ),
    "keys": CommandEntry(
        "tilerunner.cli.keys:keys",
        "API keys for 'tilerunner serve': one project and a set of scopes each.",
    ),
    "models": CommandEntry(
        "tilerunner.cli.info:models_command", "List the built-in model backends and zoo models."
    ),
    "queue": CommandEntry(
        "tilerunner.cli.queue:queue", "Inspect and repair the region queues (one per model)."
    ),
    "results": CommandEntry(
        "tilerunner.cli.jobs:results",
        "Write the merged features of JOB_ID (finished images so far) to files; a photo job's "
        "records per photo (.jsonl, .csv, .geojson).",
    ),
    "run": CommandEntry(
        "tilerunner.cli.run:run",
        "Run a model over SOURCES (files, folders, globs, http(s)://, s3:// URLs) on this machine.",
    ),
    "serve": CommandEntry(
        "tilerunner.cli.serve:serve",
        "Run the API (OpenAPI at /docs) and the coordinator; migrates the store on start.",
    ),
    "status": CommandEntry(
        "tilerunner.cli.info:status_command", "Show a job (or list the jobs) of a state database."
    ),
    "submit": CommandEntry(
        "tilerunner.cli.jobs:submit",
        "Validate, plan and enqueue the job DOCUMENT (JSON); prints the job id.",
    ),
    "tiles": CommandEntry(
        "tilerunner.cli.tiles:tiles", "XYZ tile lists: covers of an area at one zoom level."
    ),
    "watch": CommandEntry(
        "tilerunner.cli.watch:watch",
        "Turn every new object of SOURCE (s3://bucket/prefix/ or a folder) into a job.",
    ),
    "worker": CommandEntry(
        "tilerunner.cli.worker:worker",
        "Serve models: lease their work, run them, record the results.",
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are named in a table and imported when one is used."""

    def __init__(self, *args: Any, lazy_commands: dict[str, CommandEntry], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands
        self._loaded: dict[str, click.Command] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = self._load(cmd_name)
        return self._loaded[cmd_name]

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Click's, with the table's names as the "did you mean" candidates of a wrong name
        (click suggests from the commands it holds, and it holds none of the table's)."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as error:
            unknown: str | None = getattr(error, "command_name", None)  # NoSuchCommand
            if unknown is None:
                raise
            no_such: Any = type(error)
            raise no_such(unknown, possibilities=self.list_commands(ctx), ctx=ctx) from None

    def _load(self, cmd_name: str) -> click.Command:
        module_name, _, attribute = self.lazy_commands[cmd_name].target.partition(":")
        __import__(module_name)  # the statement's way, so that -X importtime reports it
        command = getattr(sys.modules[module_name], attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy_commands[cmd_name].target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command listing of ``--help``, from the table: no command module is imported."""
        rows: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name in self.lazy_commands:
                rows.append((name, click.Command(name, help=self.lazy_commands[name].summary)))
            elif (command := super().get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="tilerunner")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Run machine-learning models over imagery of any size."""
    from tilerunner.cli.common import VERBOSE

    ctx.meta[VERBOSE] = verbose  # the command loads its settings (cli.common.command_settings)


def main() -> None:
    starting()  # OpenBLAS's threads, the collector paused: see tilerunner.cli.startup
    try:
        cli(prog_name="tilerunner")
    finally:
        # Leaving: the interpreter's last garbage collections walk every object a command made
        # (GDAL, numpy, SQLAlchemy, ...) only for the OS to free them anyway; out of the
        # collector's reach, they cost the exit milliseconds instead of a large part of a
        # short command's time (docs/benchmarks.md, start-up). Atexit handlers still run.
        gc.freeze()


if __name__ == "__main__":
    main()
