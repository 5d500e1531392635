"""``defer_within``: one importer gets a stand-in for a library, imported when it is used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _in_a_new_interpreter(tmp_path: Path, code: str) -> str:
    """Run ``code`` where ``importer`` and ``heavy`` are importable; what it printed."""
    (tmp_path / "heavy.py").write_text("import sys\nprint('heavy ran')\nVALUE = 42\n")
    (tmp_path / "importer.py").write_text(
        "try:\n    import heavy\nexcept ImportError:\n    heavy = None\n"
    )
    (tmp_path / "other.py").write_text("import heavy\n")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_importer_gets_a_stand_in_until_a_name_is_used(tmp_path: Path) -> None:
    printed = _in_a_new_interpreter(
        tmp_path,
        """
        import sys
        from tilerunner.lazy import defer_within
        defer_within("importer", "heavy")
        import importer
        print("after import:", "heavy" in sys.modules, importer.heavy is not None)
        print("value:", importer.heavy.VALUE)
        print("real now:", type(sys.modules["heavy"]).__name__)
        """,
    )
    assert printed.splitlines() == [
        "after import: False True",  # nothing ran, and the importer sees the library present
        "heavy ran",
        "value: 42",
        "real now: module",
    ]


def test_other_importers_get_the_real_module(tmp_path: Path) -> None:
    printed = _in_a_new_interpreter(
        tmp_path,
        """
        import sys
        from tilerunner.lazy import defer_within
        defer_within("importer", "heavy")
        import importer, other
        print(other.heavy is sys.modules["heavy"], type(other.heavy).__name__)
        print(importer.heavy.VALUE)
        """,
    )
    assert printed.splitlines() == ["heavy ran", "True module", "42"]


@pytest.mark.parametrize("installed", [True, False])
def test_an_absent_or_imported_library_is_left_alone(tmp_path: Path, installed: bool) -> None:
    printed = _in_a_new_interpreter(
        tmp_path,
        f"""
        import sys, os
        from tilerunner.lazy import defer_within
        if not {installed}:
            os.remove("heavy.py")
        defer_within("importer", "heavy")
        import importer
        print(importer.heavy is None, type(importer.heavy).__name__)
        """,
    )
    expected = ["False _StandIn"] if installed else ["True NoneType"]
    assert printed.splitlines() == expected


def test_rasterio_opens_without_importing_boto3(tmp_path: Path) -> None:
    pytest.importorskip("boto3", reason="boto3 is not installed (the s3 extra)")
    printed = _in_a_new_interpreter(
        tmp_path,
        """
        import sys
        import tilerunner.imagery
        import rasterio.session
        print("boto3" in sys.modules, rasterio.session.boto3 is not None)
        print(rasterio.session.boto3.Session.__module__)
        """,
    )
    assert printed.splitlines() == ["False True", "boto3.session"]
