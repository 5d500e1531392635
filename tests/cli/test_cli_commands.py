"""The lazy command table of ``tilerunner``: it lists every command, each one loads and answers
``--help``, and neither ``--help`` imports what only running a command needs; ``status`` of a
new store imports neither Alembic nor numpy, and of a store at the newest schema not even
SQLAlchemy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from tr_cli import cli_env, tilerunner

from tilerunner.cli.main import COMMANDS, cli

#: What no ``--help`` may import: GDAL, arrays, the database, the API, the output writers.
HEAVY = ("numpy", "rasterio", "sqlalchemy", "alembic", "fastapi", "uvicorn", "pyarrow",
         "shapely", "pyproj", "boto3", "onnxruntime", "cv2", "torch")  # fmt: skip

# Runs the real entry point with the arguments after OUT and writes the modules it imported
# to OUT when the process exits (click ends --help with sys.exit).
_PROBE = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from tilerunner.cli.main import main
main()
"""


def _probe(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done, set(json.loads(out.read_text()))


def _command_names(help_text: str) -> list[str]:
    section = help_text.split("\nCommands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ")]


def _subcommands() -> list[tuple[str, ...]]:
    """Every command, and every command of a group, as the words that name it."""
    ctx = click.Context(cli)
    found: list[tuple[str, ...]] = []
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        found.append((name,))
        if isinstance(command, click.Group):
            found += [(name, sub) for sub in command.list_commands(ctx)]
    return found


def test_help_lists_every_command_of_the_table(tmp_path: Path) -> None:
    done = tilerunner("--help", cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _command_names(done.stdout) == sorted(COMMANDS)


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    done, modules = _probe(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert _command_names(done.stdout) == sorted(COMMANDS)
    loaded = {m for m in modules if m.startswith("tilerunner.cli.")} - {
        "tilerunner.cli.main",
        "tilerunner.cli.startup",
    }
    assert not loaded
    assert not {m.split(".")[0] for m in modules} & {*HEAVY, "pydantic"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_entry_names_its_command_and_its_first_sentence(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert command.name == name
    listed = click.Command(name, help=COMMANDS[name].summary)
    assert listed.get_short_help_str(10_000) == command.get_short_help_str(10_000)


@pytest.mark.parametrize("width", [40, 80, 200])
def test_lazy_listing_reads_as_the_loaded_commands_would(width: int) -> None:
    ctx = click.Context(cli, terminal_width=width, max_content_width=width)
    lazy, loaded = ctx.make_formatter(), ctx.make_formatter()
    cli.format_commands(ctx, lazy)
    click.Group.format_commands(cli, ctx, loaded)  # click's own: every command imported
    assert lazy.getvalue() == loaded.getvalue()


@pytest.mark.parametrize("args", [["stats"], ["qeue", "depth"], ["-v", "wroker"], ["zzz"]])
def test_a_wrong_name_is_answered_as_with_the_commands_loaded(args: list[str]) -> None:
    ctx = click.Context(cli)
    commands = [cli.get_command(ctx, name) for name in COMMANDS]
    assert all(commands)
    loaded = click.Group(
        "tilerunner",
        commands=[c for c in commands if c is not None],
        context_settings=cli.context_settings,
        params=cli.params,
    )
    runner = CliRunner()
    lazy_answer = runner.invoke(cli, args, prog_name="tilerunner")
    loaded_answer = runner.invoke(loaded, args, prog_name="tilerunner")
    assert lazy_answer.exit_code == loaded_answer.exit_code == 2
    assert lazy_answer.output == loaded_answer.output
    assert "No such command" in lazy_answer.output


@pytest.mark.parametrize("words", _subcommands(), ids=" ".join)
def test_each_command_help_exits_0_without_heavy_imports(
    tmp_path: Path, words: tuple[str, ...]
) -> None:
    done, modules = _probe(tmp_path, *words, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: tilerunner {' '.join(words)} ")
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


def test_status_of_a_new_or_existing_store_imports_no_migrations_nor_arrays(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'state.db'}"
    done, modules = _probe(tmp_path, "status", "--store", store)  # creates it at head
    assert done.returncode == 0, done.stderr
    # a new SQLite file is made from the table definitions: no migration runs either
    assert "tilerunner.store.tables" in modules
    assert "alembic" not in {m.split(".")[0] for m in modules}
    done, modules = _probe(tmp_path, "status", "--store", store)
    assert done.returncode == 0, done.stderr
    assert "job" in done.stdout and "regions" in done.stdout
    # an existing file at head is read with sqlite3 alone; the settings need no pydantic-settings
    assert not {m.split(".")[0] for m in modules} & {*HEAVY, "pydantic_settings"}
    assert "sqlite3" in modules
