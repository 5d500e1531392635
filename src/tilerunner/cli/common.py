"""Shared CLI pieces: error handling, logging set-up, the objects every command builds."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from tilerunner.errors import InvalidRequestError, TilerunnerError

if TYPE_CHECKING:
    from tilerunner.broker import Queue
    from tilerunner.settings import Settings

__all__ = [
    "VERBOSE",
    "OpenQueues",
    "command_settings",
    "configure_logging",
    "fail",
    "handle_errors",
    "parse_params",
    "pass_settings",
    "queue_factory",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Key of ``-v``'s count in the click context's ``meta`` (set by the ``tilerunner`` group).
VERBOSE = "tilerunner.verbose"
_SETTINGS = "tilerunner.settings"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def command_settings(ctx: click.Context) -> Settings:
    """The command's settings, loaded on first use: a bad ``TILERUNNER_*`` value stops the
    command with its message; logging is configured and GDAL's block cache sized then.

    Loaded when the command starts rather than before, so that ``run`` can open its image
    while they load (:mod:`tilerunner.cli.early_reads`)."""
    settings: Settings | None = ctx.meta.get(_SETTINGS)
    if settings is None:
        from tilerunner.settings import load_settings

        try:
            settings = load_settings()
        except TilerunnerError as error:
            fail(str(error))
        configure_logging(settings, ctx.meta.get(VERBOSE, 0))
        # GDAL reads this once, at the first block read of the process; the entry point set it
        # already unless TILERUNNER_GDAL_CACHE_MB was not a plain number (tilerunner.cli.startup)
        os.environ.setdefault("GDAL_CACHEMAX", str(settings.gdal_cache_mb))
        ctx.meta[_SETTINGS] = settings
    return settings


def pass_settings(func: F) -> F:
    """Like ``click.pass_obj``: the command gets its :func:`command_settings` first."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(command_settings(click.get_current_context()), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def handle_errors(func: F) -> F:
    """Turn tilerunner errors into a one-line message and a non-zero exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TilerunnerError as error:
            fail(str(error))

    return wrapper  # type: ignore[return-value]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def configure_logging(settings: Settings, verbose: int = 0) -> None:
    level = {0: settings.log_level, 1: "INFO"}.get(verbose, "DEBUG")
    handler = logging.StreamHandler()
    if settings.log_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def parse_params(values: tuple[str, ...]) -> dict[str, str]:
    """``key=value`` pairs from repeated --model-param options."""
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError(
                f"--model-param {item!r} is not key=value; write e.g. --model-param threshold=0.4"
            )
        params[key.strip()] = value.strip()
    return params


class OpenQueues:
    """The queues of one broker URL, each opened on first use and handed back the same
    afterwards (a :data:`~tilerunner.coordinator.QueueFor`); :meth:`close` closes them all."""

    def __init__(self, url: str, settings: Settings) -> None:
        self._url = url
        self._max_attempts = settings.max_attempts
        self._opened: dict[str, Queue] = {}

    def __call__(self, name: str) -> Queue:
        if name not in self._opened:
            from tilerunner.broker import open_queue

            self._opened[name] = open_queue(self._url, name, max_attempts=self._max_attempts)
        return self._opened[name]

    def close(self) -> None:
        """Close every queue opened so far (their connections); the messages stay."""
        opened, self._opened = self._opened, {}
        for queue in opened.values():
            queue.close()


def queue_factory(url: str, settings: Settings) -> OpenQueues:
    """Opens each named queue once and hands back the same object afterwards."""
    return OpenQueues(url, settings)
