"""The settings read from ``TILERUNNER_*`` variables: names in any case, lists and JSON from
their text, keyword arguments over the environment, and a bad value stopped with one line that
names the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tilerunner.errors import InvalidRequestError
from tilerunner.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TILERUNNER_"):
            monkeypatch.delenv(name)


def test_defaults_without_variables() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert settings.store_url == "sqlite:///tilerunner-state.db"
    assert settings.cache_dir == Path.home() / ".cache" / "tilerunner"
    assert settings.allowed_source_schemes == ("http", "https", "s3")


def test_variables_in_any_case_and_of_every_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILERUNNER_STORE_URL", "sqlite:////data/state.db")
    monkeypatch.setenv("tilerunner_lease_seconds", "5")
    monkeypatch.setenv("TILERUNNER_LOG_JSON", "true")
    monkeypatch.setenv("TILERUNNER_ALLOWED_HOSTS", "10.0.0.0/8, *.internal.example")
    monkeypatch.setenv("TILERUNNER_ALLOWED_SOURCE_SCHEMES", '["HTTPS"]')
    monkeypatch.setenv("TILERUNNER_XYZ_HEADERS", '{"Authorization": "Bearer x"}')
    monkeypatch.setenv("TILERUNNER_XYZ_TOKEN", "secret")
    monkeypatch.setenv("TILERUNNER_NOT_A_SETTING", "ignored")
    settings = load_settings()
    assert settings.store_url == "sqlite:////data/state.db"
    assert settings.lease_seconds == 5.0
    assert settings.log_json is True
    assert settings.allowed_hosts == ("10.0.0.0/8", "*.internal.example")
    assert settings.allowed_source_schemes == ("https",)
    assert settings.xyz_headers == {"Authorization": "Bearer x"}
    assert settings.xyz_token is not None and settings.xyz_token.get_secret_value() == "secret"
    assert "secret" not in repr(settings)


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILERUNNER_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("TILERUNNER_LEASE_SECONDS", "9")
    settings = Settings(lease_seconds=30.0)
    assert (settings.max_attempts, settings.lease_seconds) == (7, 30.0)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TILERUNNER_LEASE_SECONDS", "-1"),
        ("TILERUNNER_MAX_ATTEMPTS", "many"),
        ("TILERUNNER_LOG_LEVEL", "LOUD"),
        ("TILERUNNER_XYZ_HEADERS", "{not json"),
        ("TILERUNNER_ALLOWED_LOCAL_ROOTS", "relative/folder"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidRequestError, match=f"^invalid settings: {variable}: ") as caught:
        load_settings()
    assert "\n" not in str(caught.value)
