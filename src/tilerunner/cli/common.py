"""Shared CLI pieces: error handling, logging set-up, the objects every command builds."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tilerunner.errors import InvalidRequestError, TilerunnerError

if TYPE_CHECKING:
    from tilerunner.broker import Queue
    from tilerunner.settings import Settings

__all__ = ["configure_logging", "fail", "handle_errors", "parse_params", "queue_factory"]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


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


def queue_factory(url: str, settings: Settings) -> Callable[[str], Queue]:
    """Opens each named queue once and hands back the same object afterwards."""
    from tilerunner.broker import open_queue

    opened: dict[str, Queue] = {}

    def queue_for(name: str) -> Queue:
        if name not in opened:
            opened[name] = open_queue(url, name, max_attempts=settings.max_attempts)
        return opened[name]

    return queue_for
