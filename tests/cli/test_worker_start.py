"""``tilerunner worker --until-job -``: how ``run`` starts its workers before the job exists.

The worker loads its model, then reads the job id from its standard input; the state is
opened only then, so a worker told that there is no job (an empty line, or end of input)
leaves without creating or touching the state database.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tr_cli import cli_env

FAKE = "m=tilerunner.testing.models:FakeDetector"


def _worker(tmp_path: Path, stdin: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tilerunner", "worker", "--store", f"sqlite:///{tmp_path / 's.db'}",
         "--model", FAKE, *extra, "--until-job", "-"],
        cwd=tmp_path, env=cli_env(), input=stdin, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def test_no_job_on_stdin_leaves_without_opening_the_state(tmp_path: Path) -> None:
    for stdin in ("", "\n"):
        done = _worker(tmp_path, stdin)
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / "s.db").exists()


def test_a_bad_model_fails_before_reading_the_job(tmp_path: Path) -> None:
    done = _worker(tmp_path, "job-1\n", "--model", "n=no_such_module:Model")
    assert done.returncode == 1
    assert "no_such_module" in done.stderr
    assert not (tmp_path / "s.db").exists()


def test_a_job_id_read_from_stdin_is_checked_like_one_given_on_the_command_line(
    tmp_path: Path,
) -> None:
    done = _worker(tmp_path, "job-missing\n")
    assert done.returncode == 1
    assert "--until-job 'job-missing': no such job" in done.stderr
