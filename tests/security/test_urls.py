"""What a client may name in a job document: schemes, hosts, addresses, local paths, limits."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tilerunner.errors import InvalidRequestError, RefusedUrlError
from tilerunner.jobs import JobSpec, parse_job
from tilerunner.security.urls import UrlPolicy, check_callback_url, check_job_document
from tilerunner.settings import load_settings

PUBLIC = "93.184.215.14"


class FakeResolver:
    """``socket.getaddrinfo`` over a table; records every name it is asked for."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(table or {})
        self.calls: list[str] = []

    def __call__(self, host: str, port: int | None) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in self.table[host]
        ]


def job(
    sources: list[Any] | None = None,
    outputs: list[str] | None = None,
    callback: str | None = None,
    tile_size: int = 512,
) -> JobSpec:
    document: dict[str, Any] = {
        "sources": sources or ["s3://bucket/a.tif"],
        "pipeline": [{"task": "detect", "model": "det"}],
        "tiling": {"tile_size": tile_size, "overlap": 8},
        "outputs": [{"uri": uri} for uri in outputs or []],
    }
    if callback is not None:
        document["callback"] = {"url": callback, "secret": "s" * 32}
    return parse_job(document)


def refused(spec: JobSpec, policy: UrlPolicy | None = None, **resolved: list[str]) -> str:
    """The message of the refusal, after checking that the field comes first in it."""
    resolver = FakeResolver({k.replace("_", "."): v for k, v in resolved.items()})
    with pytest.raises(RefusedUrlError) as caught:
        check_job_document(spec, policy or UrlPolicy(), resolver)
    error = caught.value
    assert str(error).startswith(f"{error.field}: ")
    return f"{error.field}: {str(error).partition(': ')[2]}"


# -- addresses named literally: refused without any resolution --------------------------------

LITERAL_REFUSALS = [
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1/a.tif", "loopback"),
    ("http://127.8.9.10:8080/a.tif", "loopback"),
    ("http://10.0.0.1/a.tif", "private"),
    ("http://172.16.5.4/a.tif", "private"),
    ("http://192.168.1.1/a.tif", "private"),
    ("http://0.0.0.0/a.tif", "unspecified"),
    ("http://224.0.0.1/a.tif", "multicast"),
    ("http://240.0.0.1/a.tif", "reserved"),
    ("http://100.100.100.200/a.tif", "non-public"),  # shared (CGNAT) space, a metadata address
    ("http://2130706433/a.tif", "loopback"),  # decimal
    ("http://0177.0.0.1/a.tif", "loopback"),  # octal
    ("http://0x7f.0.0.1/a.tif", "loopback"),  # hex
    ("http://0x7f000001/a.tif", "loopback"),  # one hex number
    ("http://0xA9FEA9FE/a.tif", "link-local"),  # 169.254.169.254 in hex
    ("http://127.1/a.tif", "loopback"),  # short form
    ("http://127.0.0.%31/a.tif", "loopback"),  # percent-encoded
    ("http://0/a.tif", "unspecified"),
    ("http://[::1]/a.tif", "loopback"),
    ("http://[::]/a.tif", "unspecified"),
    ("http://[::ffff:127.0.0.1]/a.tif", "loopback"),  # IPv4-mapped
    ("http://[::ffff:7f00:1]/a.tif", "loopback"),  # IPv4-mapped, hex
    ("http://[::ffff:169.254.169.254]/a.tif", "link-local"),
    ("http://[::ffff:10.0.0.1]/a.tif", "private"),
    ("http://[64:ff9b::a9fe:a9fe]/a.tif", "link-local"),  # NAT64 of the metadata address
    ("http://[2002:7f00:1::]/a.tif", "loopback"),  # 6to4 around 127.0.0.1
    ("http://[fe80::1]/a.tif", "link-local"),
    ("http://[fe80::1%25eth0]/a.tif", "link-local"),
    ("http://[fd00:ec2::254]/a.tif", "private"),  # AWS metadata over IPv6
    ("http://[fc00::1]/a.tif", "private"),
    ("http://[ff02::1]/a.tif", "multicast"),
    ("HTTPS://LOCALHOST./a.tif", "this machine"),
    ("http://localhost:9000/a.tif", "this machine"),
    ("http://tiles.localhost/a.tif", "this machine"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata service"),
]


@pytest.mark.parametrize(("url", "reason"), LITERAL_REFUSALS)
def test_local_and_private_addresses_are_refused_in_every_spelling(url: str, reason: str) -> None:
    resolver = FakeResolver()
    with pytest.raises(RefusedUrlError) as caught:
        check_job_document(job(["s3://b/a.tif", url]), UrlPolicy(), resolver)
    assert caught.value.field == "sources[1]"
    assert reason in str(caught.value)
    assert "add the host to TILERUNNER_ALLOWED_HOSTS" in str(caught.value)
    assert resolver.calls == []  # decided from the URL alone


def test_the_field_of_a_source_with_an_id_is_its_url() -> None:
    sources = [f"s3://b/{i}.tif" for i in range(3)]
    sources.append({"id": "meta", "url": "http://169.254.169.254/latest/"})  # type: ignore[arg-type]
    message = refused(job(sources))
    assert message.startswith("sources[3].url: host '169.254.169.254' is a link-local address")


def test_refused_url_error_is_an_invalid_request_with_its_own_code() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_job_document(job(["http://10.0.0.1/a.tif"]), UrlPolicy(), FakeResolver())
    assert isinstance(caught.value, RefusedUrlError)
    assert caught.value.code == "refused_url"


# -- names: every address they resolve to must pass ---------------------------------------------


def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    message = refused(job(["https://imagery.example/a.tif"]), imagery_example=["10.1.2.3"])
    assert message == (
        "sources[0]: host 'imagery.example' resolves to 10.1.2.3, a private address; "
        "use a public host, or add the host to TILERUNNER_ALLOWED_HOSTS"
    )


@pytest.mark.parametrize(
    "addresses",
    [[PUBLIC, "10.0.0.5"], ["::1"], ["169.254.169.254"], [PUBLIC, "::ffff:127.0.0.1"]],
)
def test_one_bad_address_among_many_is_enough_to_refuse(addresses: list[str]) -> None:
    message = refused(job(["https://imagery.example/a.tif"]), imagery_example=addresses)
    assert message.startswith("sources[0]: host 'imagery.example' resolves to")


def test_a_name_that_does_not_resolve_is_refused_with_a_clear_message() -> None:
    message = refused(job(["https://no-such-host.example/a.tif"]))
    assert message.startswith("sources[0]: host 'no-such-host.example' does not resolve")
    assert "check the spelling" in message


def test_public_hosts_and_object_store_urls_pass() -> None:
    resolver = FakeResolver({"tiles.example": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    spec = job(
        ["https://tiles.example/a.tif", "HTTP://8.8.8.8/b.tif", {"id": "c", "url": "s3://b/c.tif"}],
        outputs=["s3://bucket/out/result.geojson"],
        callback="https://tiles.example/hook",
    )
    check_job_document(spec, UrlPolicy(), resolver)
    assert resolver.calls == ["tiles.example"]  # resolved once, cached for the callback


# -- the allow list lifts the refusal -----------------------------------------------------------


def test_a_host_pattern_in_the_allow_list_is_accepted_without_resolving() -> None:
    policy = UrlPolicy(allowed_hosts=("*.internal.example",))
    resolver = FakeResolver({"internal.example": ["10.0.0.9"]})
    check_job_document(job(["http://tiles.internal.example/a.tif"]), policy, resolver)
    assert resolver.calls == []
    with pytest.raises(RefusedUrlError) as caught:  # the pattern does not cover the parent name
        check_job_document(job(["http://internal.example/a.tif"]), policy, resolver)
    assert caught.value.field == "sources[0]"


def test_an_address_in_the_allow_list_is_accepted_in_any_spelling() -> None:
    policy = UrlPolicy(allowed_hosts=("10.1.2.3",))
    for url in ("http://10.1.2.3/a.tif", "http://167838211/a.tif", "http://[::ffff:a01:203]/"):
        check_job_document(job([url]), policy, FakeResolver())
    message = refused(job(["http://10.1.2.4/a.tif"]), policy)
    assert message.startswith("sources[0]: host '10.1.2.4' is a private address")


def test_a_cidr_entry_allows_addresses_and_names_resolving_inside_it() -> None:
    policy = UrlPolicy(allowed_hosts=("10.0.0.0/8", "fd00::/8"))
    resolver = FakeResolver({"minio.cluster": ["10.2.3.4", "fd00::7"]})
    spec = job(["http://10.9.8.7/a.tif", "http://minio.cluster:9000/b.tif"])
    check_job_document(spec, policy, resolver)
    assert resolver.calls == ["minio.cluster"]
    assert refused(job(["http://192.168.0.1/a.tif"]), policy).startswith("sources[0]: ")
    message = refused(job(["http://169.254.169.254/"]), policy)
    assert "link-local" in message


# -- schemes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "outputs", "callback", "field", "hint"),
    [
        (["ftp://8.8.8.8/a.tif"], [], None, "sources[0]", "TILERUNNER_ALLOWED_SOURCE_SCHEMES"),
        (["gopher://8.8.8.8/"], [], None, "sources[0]", "use http:// or https:// or s3://"),
        (["wms:http://8.8.8.8/"], [], None, "sources[0]", "TILERUNNER_ALLOWED_SOURCE_SCHEMES"),
        (["file:///etc/passwd"], [], None, "sources[0]", "TILERUNNER_ALLOWED_LOCAL_ROOTS"),
        (["/etc/passwd"], [], None, "sources[0]", "local paths are not accepted"),
        ([], ["https://8.8.8.8/out.geojson"], None, "outputs[0].uri", "use s3://"),
        ([], ["/tmp/out.geojson"], None, "outputs[0].uri", "TILERUNNER_ALLOWED_LOCAL_ROOTS"),
        ([], [], "s3://bucket/hook", "callback.url", "TILERUNNER_ALLOWED_CALLBACK_SCHEMES"),
        ([], [], "file:///etc/passwd", "callback.url", "TILERUNNER_ALLOWED_CALLBACK_SCHEMES"),
        ([], [], "/tmp/hook", "callback.url", "a URL without a scheme"),
    ],
)
def test_schemes_outside_the_policy_are_refused(
    sources: list[str], outputs: list[str], callback: str | None, field: str, hint: str
) -> None:
    message = refused(job(sources or None, outputs, callback))
    assert message.startswith(f"{field}: ")
    assert hint in message


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1\\@8.8.8.8/a.tif", "backslash"),
        ("http://a@b@8.8.8.8/a.tif", "more than one '@'"),
        ("http://8.8.8.8:port/a.tif", "not a valid URL"),
        ("http://[::1/a.tif", "not a valid URL"),
        ("http://8.8.8.8/a.tif\n", "control characters"),
        (" http://127.0.0.1/a.tif", "surrounding spaces"),
        ("http://t\u00e9st.example/a.tif", "ASCII (IDNA) form"),
        ("http:///a.tif", "names no host"),
    ],
)
def test_urls_that_parsers_could_read_differently_are_refused(url: str, says: str) -> None:
    message = refused(job([url]))
    assert message.startswith("sources[0]: ")
    assert says in message


# -- local paths and file:// URLs ---------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "a.tif").write_bytes(b"x")
    (outside / "secret.tif").write_bytes(b"x")
    return {"allowed": allowed, "outside": outside}


def local_policy(root: Path) -> UrlPolicy:
    return UrlPolicy(allowed_local_roots=(str(root),))


def test_paths_and_file_urls_inside_an_allowed_root_pass(roots: dict[str, Path]) -> None:
    allowed = roots["allowed"]
    (allowed / "sub").mkdir()
    (allowed / "sub" / "b.tif").write_bytes(b"x")
    spec = job(
        [str(allowed / "a.tif"), f"file://{allowed}/a.tif", str(allowed / "*.tif"), str(allowed)],
        outputs=[str(allowed / "sub" / "new.geojson"), "s3://b/out.geojson"],
    )
    check_job_document(spec, local_policy(allowed), FakeResolver())
    # a root that is itself a symlink is compared by its real path
    link_root = allowed.parent / "root-link"
    link_root.symlink_to(allowed)
    check_job_document(job([str(allowed / "a.tif")]), local_policy(link_root), FakeResolver())


def test_paths_outside_the_roots_are_refused(roots: dict[str, Path]) -> None:
    policy = local_policy(roots["allowed"])
    for source in ("/etc/passwd", "file:///etc/passwd", str(roots["outside"] / "secret.tif")):
        message = refused(job([source]), policy)
        assert message.startswith("sources[0]: ")
        assert "outside the allowed local roots" in message


def test_dot_dot_escapes_are_refused(roots: dict[str, Path]) -> None:
    allowed, policy = roots["allowed"], local_policy(roots["allowed"])
    escape = f"{allowed}/../outside/secret.tif"
    assert os.path.exists(escape)
    message = refused(job(["s3://b/a.tif", escape]), policy)
    assert message.startswith("sources[1]: ")
    assert f"resolves to '{roots['outside'] / 'secret.tif'}'" in message
    message = refused(job(outputs=[f"file://{allowed}/%2e%2e/outside/x.geojson"]), policy)
    assert message.startswith("outputs[0].uri: ")


def test_symlinks_inside_a_root_pointing_outside_are_refused(roots: dict[str, Path]) -> None:
    allowed, outside = roots["allowed"], roots["outside"]
    (allowed / "link.tif").symlink_to(outside / "secret.tif")
    (allowed / "dir-link").symlink_to(outside)
    policy = local_policy(allowed)
    for source in ("link.tif", "dir-link/secret.tif"):
        message = refused(job([str(allowed / source)]), policy)
        assert message.startswith("sources[0]: ")
        assert str(outside / "secret.tif") in message
    # a folder or a pattern must not expand to a file outside either
    for source in (str(allowed), str(allowed / "*.tif")):
        message = refused(job([source]), policy)
        assert message.startswith("sources[0]: ")
        assert "link.tif" in message
    # nor may an output overwrite a file outside through a link
    message = refused(job(outputs=[str(allowed / "link.tif")]), policy)
    assert message.startswith("outputs[0].uri: ")


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/vsicurl/http://169.254.169.254/latest/", "GDAL virtual paths"),
        ("//vsis3/bucket/a.tif", "GDAL virtual paths"),
        ("relative/a.tif", "not an absolute path"),
        ("<GDAL_WMS><Service name='TMS'/></GDAL_WMS>", "not an absolute path"),
        ("file://fileserver/share/a.tif", "names host 'fileserver'"),
    ],
)
def test_gdal_virtual_and_relative_paths_are_refused(path: str, says: str) -> None:
    message = refused(job([path]), local_policy(Path("/")))
    assert message.startswith("sources[0]: ")
    assert says in message


# -- callbacks ----------------------------------------------------------------------------------


def test_callback_urls_with_credentials_are_refused() -> None:
    message = refused(job(callback="https://user:pass@hooks.example/done"))
    assert message.startswith("callback.url: carries credentials")
    assert "callback.secret" in message


def test_callback_to_the_metadata_service_is_refused() -> None:
    message = refused(job(callback="http://169.254.169.254/latest/meta-data/iam/"))
    assert message.startswith("callback.url: host '169.254.169.254' is a link-local address")


def test_a_callback_is_checked_again_before_delivery() -> None:
    resolver = FakeResolver({"hooks.example": [PUBLIC]})
    check_job_document(job(callback="https://hooks.example/done"), UrlPolicy(), resolver)
    resolver.table["hooks.example"] = ["127.0.0.1"]  # DNS rebinding after acceptance
    with pytest.raises(RefusedUrlError) as caught:
        check_callback_url("https://hooks.example/done", UrlPolicy(), resolver)
    assert caught.value.field == "callback.url"
    assert "resolves to 127.0.0.1, a loopback address" in str(caught.value)
    assert resolver.calls == ["hooks.example", "hooks.example"]


# -- limits -------------------------------------------------------------------------------------


def test_too_many_sources_are_refused() -> None:
    message = refused(job([f"s3://b/{i}.tif" for i in range(1001)]))
    assert message.startswith("sources: the job lists 1001 sources, over this server's limit")
    assert "TILERUNNER_MAX_SOURCES_PER_JOB" in message
    check_job_document(job([f"s3://b/{i}.tif" for i in range(1000)]), UrlPolicy(), FakeResolver())


def test_folders_count_against_the_source_limit(roots: dict[str, Path]) -> None:
    allowed = roots["allowed"]
    for i in range(3):
        (allowed / f"{i}.tif").write_bytes(b"x")
    policy = UrlPolicy(allowed_local_roots=(str(allowed),), max_sources_per_job=3)
    message = refused(job([str(allowed)]), policy)  # four files
    assert message.startswith("sources: the folders and patterns expand to over 3 files")


def test_a_tile_size_over_the_limit_is_refused() -> None:
    message = refused(job(tile_size=8192))
    assert message.startswith("tiling.tile_size: 8192 px is over this server's limit of 4096")
    assert "TILERUNNER_MAX_TILE_SIZE" in message
    check_job_document(job(tile_size=4096), UrlPolicy(), FakeResolver())


# -- the checks fetch nothing -------------------------------------------------------------------

_NETWORK_EVENTS = frozenset(
    {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"}
    | {"socket.sendmsg", "socket.bind", "urllib.Request", "http.client.connect"}
)
_seen: list[str] | None = None


def _audit(event: str, _args: tuple[Any, ...]) -> None:
    if _seen is not None and event in _NETWORK_EVENTS:
        _seen.append(event)


@pytest.fixture
def network_events() -> Iterator[list[str]]:
    """Network actions the process takes while the test runs (an audit hook cannot be removed,
    so it is installed once and switched on and off)."""
    global _seen
    if not getattr(sys, "_tilerunner_url_audit", False):
        sys.addaudithook(_audit)
        sys._tilerunner_url_audit = True  # type: ignore[attr-defined]
    _seen = []
    try:
        yield _seen
    finally:
        _seen = None


def test_the_checks_take_no_network_action_beyond_the_resolver(
    network_events: list[str], roots: dict[str, Path]
) -> None:
    resolver = FakeResolver({"tiles.example": [PUBLIC], "hooks.example": [PUBLIC]})
    spec = job(
        [
            *("https://tiles.example/a.tif", "https://tiles.example/b.tif", "http://8.8.8.8/c"),
            *("s3://bucket/d.tif", str(roots["allowed"] / "a.tif")),
        ],
        outputs=["s3://bucket/out.geojson", str(roots["allowed"] / "out.geojson")],
        callback="https://hooks.example/done",
    )
    check_job_document(spec, local_policy(roots["allowed"]), resolver)
    check_callback_url("https://hooks.example/done", UrlPolicy(), resolver)
    assert resolver.calls == ["tiles.example", "hooks.example", "hooks.example"]
    assert network_events == []
    socket.getaddrinfo("127.0.0.1", None)  # the hook does see a real lookup
    assert network_events == ["socket.getaddrinfo"]


# -- settings -----------------------------------------------------------------------------------


def test_settings_read_comma_separated_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILERUNNER_ALLOWED_HOSTS", "*.internal.example, 10.0.0.0/8")
    monkeypatch.setenv("TILERUNNER_ALLOWED_LOCAL_ROOTS", "/data/in,/data/out")
    monkeypatch.setenv("TILERUNNER_ALLOWED_SOURCE_SCHEMES", '["HTTPS", "s3"]')
    monkeypatch.setenv("TILERUNNER_ALLOWED_OUTPUT_SCHEMES", "s3,https")
    monkeypatch.setenv("TILERUNNER_MAX_TILE_SIZE", "2048")
    policy = load_settings().url_policy()
    assert policy == UrlPolicy(
        source_schemes=("https", "s3"),
        output_schemes=("s3", "https"),
        allowed_hosts=("*.internal.example", "10.0.0.0/8"),
        allowed_local_roots=("/data/in", "/data/out"),
        max_tile_size=2048,
    )


def test_settings_default_to_the_strict_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TILERUNNER_ALLOWED_", "TILERUNNER_MAX_")):
            monkeypatch.delenv(name)
    assert load_settings().url_policy() == UrlPolicy()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TILERUNNER_ALLOWED_HOSTS", "10.0.0.0/33"),
        ("TILERUNNER_ALLOWED_HOSTS", "bad host"),
        ("TILERUNNER_ALLOWED_LOCAL_ROOTS", "data/in"),
        ("TILERUNNER_ALLOWED_SOURCE_SCHEMES", "https,s 3"),
        ("TILERUNNER_MAX_SOURCES_PER_JOB", "0"),
    ],
)
def test_bad_settings_stop_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidRequestError, match=f"invalid settings: {variable}: "):
        load_settings()
