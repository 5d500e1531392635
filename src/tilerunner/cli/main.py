"""The ``tilerunner`` command."""

from __future__ import annotations

import os

import click

from tilerunner import __version__
from tilerunner.cli.common import configure_logging, fail
from tilerunner.cli.demo import demo
from tilerunner.cli.info import models_command, status_command
from tilerunner.cli.jobs import cancel, results, submit
from tilerunner.cli.keys import keys
from tilerunner.cli.queue import queue
from tilerunner.cli.run import run
from tilerunner.cli.serve import serve
from tilerunner.cli.worker import worker
from tilerunner.errors import TilerunnerError
from tilerunner.settings import load_settings

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tilerunner")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Run machine-learning models over imagery of any size."""
    try:
        settings = load_settings()
    except TilerunnerError as error:
        fail(str(error))
    configure_logging(settings, verbose)
    # GDAL reads this once, at the first block read of the process: set it before any.
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.gdal_cache_mb))
    ctx.obj = settings


cli.add_command(run)
cli.add_command(demo)
cli.add_command(worker)
cli.add_command(models_command)
cli.add_command(status_command)
cli.add_command(serve)
cli.add_command(submit)
cli.add_command(results)
cli.add_command(cancel)
cli.add_command(queue)
cli.add_command(keys)


def main() -> None:
    cli(prog_name="tilerunner")


if __name__ == "__main__":
    main()
