"""API keys: the format, the stored hash, scopes and project names (pure functions)."""

from __future__ import annotations

import hashlib

import pytest

from tilerunner.errors import InvalidRequestError
from tilerunner.security.keys import (
    Scope,
    allows,
    check_project,
    generate_key,
    hash_key,
    key_id_of,
    key_matches,
    parse_scopes,
)


def test_a_key_is_prefixed_names_its_id_and_only_its_hash_is_kept() -> None:
    new = generate_key()
    assert new.key.startswith(f"trk_{new.id}_")
    assert len(new.id) == 12 and len(new.key) == len("trk_") + 12 + 1 + 43
    assert key_id_of(new.key) == new.id
    assert new.key_hash == hashlib.sha256(new.key.encode()).hexdigest() == hash_key(new.key)
    assert new.key not in repr(new) and new.key_hash not in repr(new)


def test_keys_are_random() -> None:
    keys = {generate_key().key for _ in range(200)}
    ids = {key_id_of(k) for k in keys}
    assert len(keys) == 200 and len(ids) == 200


@pytest.mark.parametrize(
    "text",
    [
        "",
        "trk_",
        "nope",
        "trk_0123456789ab",
        "trk_0123456789ab_short",
        "TRK_0123456789ab_" + "a" * 43,
        "trk_0123456789AB_" + "a" * 43,
        "trk_0123456789ab_" + "a" * 42 + "!",
    ],
)
def test_malformed_keys_have_no_id(text: str) -> None:
    assert key_id_of(text) is None


def test_key_matches_only_its_own_hash() -> None:
    a, b = generate_key(), generate_key()
    assert key_matches(a.key, a.key_hash)
    assert not key_matches(a.key, b.key_hash)
    assert not key_matches(a.key[:-1], a.key_hash)


@pytest.mark.parametrize("needed", list(Scope))
def test_admin_implies_every_scope_and_others_only_themselves(needed: Scope) -> None:
    assert allows({Scope.ADMIN}, needed)
    for held in (Scope.SUBMIT, Scope.READ, Scope.WORKER):
        assert allows({held}, needed) is (held is needed)
    assert not allows(set(), needed)


def test_scopes_parse_by_name_and_unknown_names_are_refused() -> None:
    assert parse_scopes(["read", " Submit "]) == {Scope.READ, Scope.SUBMIT}
    with pytest.raises(InvalidRequestError, match="unknown scope 'reader'; use one of"):
        parse_scopes(["reader"])
    with pytest.raises(InvalidRequestError, match="at least one scope"):
        parse_scopes([])


@pytest.mark.parametrize("name", ["default", "team-a", "A.b_c", "x" * 64])
def test_project_names_that_are_accepted(name: str) -> None:
    assert check_project(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a b", "a/b", "x" * 65, "é"])
def test_project_names_that_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequestError, match="invalid project name"):
        check_project(name)
