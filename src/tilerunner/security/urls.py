"""Checks on every URL and path a network client names in a job document (server mode).

``tilerunner serve`` reads the sources a client lists, writes its outputs and POSTs to its
callback, so without a check a client could make the server read ``file:///etc/passwd`` or the
cloud metadata service at ``169.254.169.254``. :func:`check_job_document` refuses, with a
:class:`~tilerunner.errors.RefusedUrlError` that names the field and the setting to change:

- schemes outside the policy (sources: http, https, s3; outputs: s3; callbacks: https, http);
- hosts that are, or resolve to, loopback, link-local (cloud metadata), private, shared (CGNAT),
  unspecified, multicast or reserved addresses, also inside IPv4-mapped, NAT64, 6to4 and Teredo
  IPv6 forms and in the numeric spellings ``socket.inet_aton`` takes (``2130706433``,
  ``0177.0.0.1``, ``0x7f.1``), unless ``allowed_hosts`` names them (a name pattern, an address
  or a CIDR block). Every address a name resolves to must pass; a name that does not resolve is
  refused;
- local paths and ``file://`` URLs unless their real path (after ``..`` and symlinks, also of
  every file a folder or glob source expands to) lies under an allowed local root; GDAL virtual
  paths (``/vsicurl/...``) always;
- credentials in a callback URL (``callback.secret`` authenticates a delivery);
- more sources than ``max_sources_per_job`` and tiles larger than ``max_tile_size``.

``s3://`` (and ``gs://``, ``az://``) URLs are checked by scheme only: the endpoint they reach
is the operator's setting, not the client's. The checks read the local file system for local
paths and call ``resolve`` (``socket.getaddrinfo`` unless injected) for host names; they never
open a connection. A name may resolve differently later, so :func:`check_callback_url` is run
again right before each callback delivery.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from tilerunner.errors import RefusedUrlError

if TYPE_CHECKING:  # the job models (pydantic) are not needed to build the settings' policy
    from tilerunner.jobs.spec import JobSpec

__all__ = [
    "Resolver",
    "UrlPolicy",
    "check_callback_url",
    "check_job_document",
    "parse_allowed_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``socket.getaddrinfo``'s shape: ``(host, port)`` -> ``[(family, type, proto, name, sockaddr)]``.
Resolver = Callable[[str, int | None], Iterable[tuple[Any, ...]]]

#: Object-store schemes: checked by scheme only (the endpoint is the operator's setting).
OBJECT_STORE_SCHEMES = frozenset({"s3", "gs", "az"})
#: Names refused before resolution: this machine and cloud metadata services.
_LOCAL_NAMES = (
    *("localhost", "*.localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"),
    *("metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"),
)
_HOST_CHARS = re.compile(r"^[a-z0-9._-]+$")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")
_GDAL_VIRTUAL = re.compile(r"^/+vsi[a-z0-9_?]*(/|$)", re.IGNORECASE)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TO_HOSTS = "add the host to TILERUNNER_ALLOWED_HOSTS"
_TO_ROOTS = "TILERUNNER_ALLOWED_LOCAL_ROOTS"


def parse_allowed_host(entry: str) -> IPNetwork | str:
    """One ``allowed_hosts`` entry: a CIDR block or address (as a network) or a name pattern."""
    text = entry.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        if "/" in text or ":" in text:
            raise ValueError(f"{entry!r} is not a valid address or CIDR block") from None
    if not text or not re.fullmatch(r"[a-z0-9._*?\[\]-]+", text):
        raise ValueError(f"{entry!r} is not a host name pattern such as '*.internal.example'")
    return text


@dataclass(frozen=True)
class UrlPolicy:
    """What a client may name; build it with ``Settings.url_policy()``."""

    source_schemes: tuple[str, ...] = ("http", "https", "s3")
    output_schemes: tuple[str, ...] = ("s3",)
    callback_schemes: tuple[str, ...] = ("https", "http")
    allowed_hosts: tuple[str, ...] = ()
    """Name patterns (fnmatch), addresses or CIDR blocks exempt from the private-address rule."""
    allowed_local_roots: tuple[str, ...] = ()
    """Absolute folders; local paths and ``file://`` URLs must resolve inside one."""
    max_sources_per_job: int = 1000
    max_tile_size: int = 4096

    def __post_init__(self) -> None:
        schemes = (*self.source_schemes, *self.output_schemes, *self.callback_schemes)
        if bad := [s for s in schemes if not _SCHEME.match(s)]:
            raise ValueError(f"schemes are lower-case names such as 'https'; got {bad}")
        for entry in self.allowed_hosts:
            parse_allowed_host(entry)
        if bad := [r for r in self.allowed_local_roots if not os.path.isabs(r)]:
            raise ValueError(f"allowed local roots must be absolute paths; got {bad}")


def check_job_document(
    spec: JobSpec, policy: UrlPolicy, resolve: Resolver = socket.getaddrinfo
) -> None:
    """Refuse a job document that names what ``policy`` does not allow (RefusedUrlError)."""
    if len(spec.sources) > policy.max_sources_per_job:
        raise RefusedUrlError(
            "sources",
            f"the job lists {len(spec.sources)} sources, over this server's limit of "
            f"{policy.max_sources_per_job}; split it into several jobs "
            "or raise TILERUNNER_MAX_SOURCES_PER_JOB",
        )
    if spec.tiling.tile_size > policy.max_tile_size:
        raise RefusedUrlError(
            "tiling.tile_size",
            f"{spec.tiling.tile_size} px is over this server's limit of "
            f"{policy.max_tile_size} px; use a smaller tile_size or raise TILERUNNER_MAX_TILE_SIZE",
        )
    checker = _Checker(policy, resolve)
    for index, source in enumerate(spec.sources):
        field, url = (
            (f"sources[{index}]", source)
            if isinstance(source, str)
            else (f"sources[{index}].url", source.url)
        )
        checker.check(field, url, "source")
    if spec.tiles is not None:  # workers fetch every host the template names
        from tilerunner.xyz.urls import hosts_of

        for url in hosts_of(spec.tiles.url_template, spec.tiles.subdomains):
            checker.check("tiles.url_template", url, "source")
        if spec.tiles.file is not None:
            checker.check("tiles.file", spec.tiles.file, "source")
    if spec.photos is not None:
        _check_manifests(spec, policy, checker)
    for index, output in enumerate(spec.outputs):
        checker.check(f"outputs[{index}].uri", output.uri, "output")
    if spec.callback is not None:
        checker.check("callback.url", spec.callback.url, "callback")


def _check_manifests(spec: JobSpec, policy: UrlPolicy, checker: _Checker) -> None:
    """A photo manifest (its own path checked above) names more sources: check every one."""
    from tilerunner.photos.sources import expand_photos, is_manifest

    for index, source in enumerate(spec.sources):
        if not (isinstance(source, str) and is_manifest(source)):
            continue
        photos = [p for p in expand_photos([source]) if p.url]
        if len(photos) > policy.max_sources_per_job:
            raise RefusedUrlError(
                f"sources[{index}]",
                f"the manifest lists {len(photos)} photos, over this server's limit of "
                f"{policy.max_sources_per_job}; split it or raise TILERUNNER_MAX_SOURCES_PER_JOB",
            )
        for photo in photos:
            checker.check(f"sources[{index}] photo {photo.id!r}", photo.url, "source")


def check_callback_url(url: str, policy: UrlPolicy, resolve: Resolver = socket.getaddrinfo) -> None:
    """Check a callback URL again right before a delivery: its name may resolve elsewhere now."""
    _Checker(policy, resolve).check("callback.url", url, "callback")


def _address_problem(ip: IPAddress) -> str | None:
    """Why a client may not make the server reach ``ip``, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _address_problem(ip.ipv4_mapped)
        if ip in _NAT64:
            return _address_problem(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = [ip.sixtofour] if ip.sixtofour else list(ip.teredo or ())
        for inner in embedded:
            if problem := _address_problem(inner):
                return f"{problem} inside {ip}"
    checks = (
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (where cloud metadata services listen)"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "a non-public address"),
    )
    return next((reason for hit, reason in checks if hit), None)


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling ``inet_aton`` takes, else None."""
    if ":" in host:
        return ipaddress.IPv6Address(host.split("%", 1)[0])
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class _Checker:
    """One document's checks; caches name resolution so a host is resolved once."""

    def __init__(self, policy: UrlPolicy, resolve: Resolver) -> None:
        self.policy = policy
        self.resolve = resolve
        entries = [parse_allowed_host(entry) for entry in policy.allowed_hosts]
        self.networks = [e for e in entries if not isinstance(e, str)]
        self.patterns = [e for e in entries if isinstance(e, str)]
        self.roots = [os.path.realpath(root) for root in policy.allowed_local_roots]
        self.expanded = 0
        self._resolved: dict[str, list[IPAddress] | str] = {}

    def check(self, field: str, value: str, kind: str) -> None:
        if any(ord(c) < 32 or ord(c) == 127 for c in value) or value != value.strip():
            raise RefusedUrlError(field, "contains control characters or surrounding spaces")
        if "\\" in value:
            raise RefusedUrlError(field, "contains a backslash; write paths and URLs with '/'")
        schemes = {
            "source": self.policy.source_schemes,
            "output": self.policy.output_schemes,
            "callback": self.policy.callback_schemes,
        }[kind]
        try:
            parts = urlsplit(value)
            _ = parts.port  # a port that is not a number raises here
        except ValueError as error:
            raise RefusedUrlError(field, f"is not a valid URL ({error}); fix it") from None
        scheme = parts.scheme.lower()
        if kind != "callback" and (scheme == "file" or len(scheme) < 2):
            self._check_local(field, value, parts.path if scheme else value, schemes, kind)
            return
        if scheme not in schemes:
            env = f"TILERUNNER_ALLOWED_{kind.upper()}_SCHEMES"
            used = f"{scheme}://" if scheme else "a URL without a scheme"
            raise RefusedUrlError(
                field,
                f"{kind}s may not use {used}; use "
                f"{' or '.join(s + '://' for s in schemes)} or add the scheme to {env}",
            )
        if scheme not in OBJECT_STORE_SCHEMES:
            self._check_netloc(field, parts.netloc, parts.username, kind)

    def _check_netloc(self, field: str, netloc: str, user: str | None, kind: str) -> None:
        if netloc.count("@") > 1:
            raise RefusedUrlError(field, "has more than one '@' before the host; remove them")
        if user is not None and kind == "callback":
            raise RefusedUrlError(
                field,
                "carries credentials (user:password@); remove them and set callback.secret, "
                "which signs every delivery",
            )
        host = netloc.rpartition("@")[2]
        host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
        self._check_host(field, unquote(host).lower().rstrip("."))

    def _check_host(self, field: str, host: str) -> None:
        if not host:
            raise RefusedUrlError(field, "names no host; give a URL such as https://host/path")
        if ":" not in host and not _HOST_CHARS.match(host):
            raise RefusedUrlError(
                field, f"host {host!r} is not a plain DNS name; use its ASCII (IDNA) form"
            )
        try:
            address = _literal_address(host)
        except ValueError as error:
            raise RefusedUrlError(field, f"host {host!r} is not a valid address: {error}") from None
        if address is not None:
            if not self._allowed(address, str(address)) and (why := _address_problem(address)):
                raise RefusedUrlError(
                    field, f"host {host!r} is {why}; use a public host, or {_TO_HOSTS}"
                )
            return
        if self._name_allowed(host):
            return
        if any(fnmatchcase(host, p) for p in _LOCAL_NAMES):
            raise RefusedUrlError(
                field, f"host {host!r} names this machine or a metadata service; {_TO_HOSTS}"
            )
        for address in self._addresses(field, host):
            if not self._allowed(address, None) and (why := _address_problem(address)):
                raise RefusedUrlError(
                    field,
                    f"host {host!r} resolves to {address}, {why}; "
                    f"use a public host, or {_TO_HOSTS}",
                )

    def _addresses(self, field: str, host: str) -> list[IPAddress]:
        if host not in self._resolved:
            try:
                infos = list(self.resolve(host, None))
                found = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}
                self._resolved[host] = sorted(found, key=lambda a: (a.version, int(a)))
            except (OSError, UnicodeError, ValueError) as error:
                self._resolved[host] = str(error)
        result = self._resolved[host]
        if isinstance(result, str) or not result:
            raise RefusedUrlError(
                field,
                f"host {host!r} does not resolve ({result or 'no addresses'}); "
                "check the spelling of the host",
            )
        return result

    def _allowed(self, address: IPAddress, text: str | None) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # reaches the IPv4 host: the IPv4 entries decide
            text = text and str(address)
        if any(address in network for network in self.networks):
            return True
        return text is not None and self._name_allowed(text)

    def _name_allowed(self, host: str) -> bool:
        return any(fnmatchcase(host, pattern) for pattern in self.patterns)

    def _check_local(
        self, field: str, value: str, path: str, schemes: tuple[str, ...], kind: str
    ) -> None:
        if not self.roots:
            raise RefusedUrlError(
                field,
                f"local paths are not accepted by this server; give a "
                f"{' or '.join(s + '://' for s in schemes)} URL or ask the operator "
                f"to set {_TO_ROOTS}",
            )
        if value.lower().startswith("file:"):
            host = urlsplit(value).netloc.lower()
            if host not in ("", "localhost"):
                raise RefusedUrlError(field, f"file:// URL names host {host!r}; use file:///path")
            path = unquote(path)
        if "\0" in path or not os.path.isabs(path):
            raise RefusedUrlError(field, f"{path!r} is not an absolute path; give the full path")
        if _GDAL_VIRTUAL.match(os.path.normpath(path)):
            raise RefusedUrlError(
                field, "GDAL virtual paths (/vsi...) are not accepted; give the URL or file itself"
            )
        self._check_under_root(field, path, path)
        if kind == "source":
            for entry in self._expansions(path):
                self._check_under_root(field, entry, path)

    def _check_under_root(self, field: str, path: str, given: str) -> None:
        real = os.path.realpath(path)
        if not any(os.path.commonpath([real, root]) == root for root in self.roots):
            where = f"{path!r} (in {given!r})" if path != given else repr(path)
            raise RefusedUrlError(
                field,
                f"{where} resolves to {real!r}, outside the allowed local roots "
                f"({', '.join(self.roots)}); use a path inside one or add a folder to {_TO_ROOTS}",
            )

    def _expansions(self, path: str) -> Iterator[str]:
        """What a folder or glob source stands for; counted against the source limit."""
        if set("*?[") & set(path):
            entries: Iterable[str] = glob.iglob(path)
        elif os.path.isdir(path):
            with os.scandir(path) as scan:
                entries = [entry.path for entry in scan]
        else:
            return
        for entry in entries:
            self.expanded += 1
            if self.expanded > self.policy.max_sources_per_job:
                raise RefusedUrlError(
                    "sources",
                    f"the folders and patterns expand to over {self.policy.max_sources_per_job} "
                    "files, this server's limit; split the job or raise "
                    "TILERUNNER_MAX_SOURCES_PER_JOB",
                )
            yield entry
