"""Dependencies of the routes: the store, the settings, the caller and its scopes.

Routes declare what they need as ``Annotated`` aliases::

    @router.get("/v1/things")
    def things(caller: ReadCaller, store: StoreDep) -> ...

``require(scope)`` builds the dependency that authenticates the request and checks one scope;
``ReadCaller``, ``SubmitCaller``, ``WorkerCaller`` and ``AdminCaller`` are the four of them.
The key travels in ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; both are declared
as security schemes, so /docs has an Authorize button. With ``serve --insecure`` every caller
is an admin of the ``default`` project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tilerunner.coordinator import QueueFor
from tilerunner.errors import UnknownNameError
from tilerunner.security.keys import (
    DEFAULT_PROJECT,
    AuthenticationError,
    PermissionDeniedError,
    Scope,
    allows,
    hash_key,
    key_id_of,
    key_matches,
)
from tilerunner.settings import Settings
from tilerunner.store import JobRecord, KeyRepository, Store

__all__ = [
    "AdminCaller",
    "Caller",
    "CallerDep",
    "QueueForDep",
    "ReadCaller",
    "SettingsDep",
    "StoreDep",
    "SubmitCaller",
    "WorkerCaller",
    "get_caller",
    "job_of",
    "require",
]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key's id (None with ``--insecure``), its project and scopes."""

    key_id: str | None
    project: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return allows(self.scopes, scope)


def get_store(request: Request) -> Store:
    return cast(Store, request.app.state.store)


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_queue_for(request: Request) -> QueueFor:
    return cast(QueueFor, request.app.state.queue_for)


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
QueueForDep = Annotated[QueueFor, Depends(get_queue_for)]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="trk_<id>_<secret>",
    description="An API key from `tilerunner keys create`: `Authorization: Bearer trk_...`.",
)
_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="apiKey",
    description="The same API key in an `X-API-Key` header.",
)
_INSECURE = Caller(None, DEFAULT_PROJECT, frozenset({Scope.ADMIN}))


def get_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Caller:
    """The caller behind the request's API key; 401 without a valid, unrevoked key."""
    if request.app.state.insecure:
        return _INSECURE
    key = bearer.credentials if bearer is not None else header
    if not key:
        raise AuthenticationError(
            "missing API key; send 'Authorization: Bearer <key>' (create a key with "
            "'tilerunner keys create')"
        )
    keys = cast(KeyRepository, request.app.state.keys)
    record = keys.lookup(hash_key(key)) if key_id_of(key) is not None else None
    if record is None or not key_matches(key, record.key_hash):
        raise AuthenticationError(
            "invalid API key; check it was copied whole, or create one with "
            "'tilerunner keys create'"
        )
    if record.revoked:
        raise AuthenticationError(
            f"API key {record.id} was revoked; create a new one with 'tilerunner keys create'"
        )
    keys.touch(record)
    return Caller(record.id, record.project, record.scopes)


CallerDep = Annotated[Caller, Depends(get_caller)]


def require(scope: Scope) -> Callable[[Caller], Caller]:
    """A dependency: the authenticated caller, if its key holds ``scope`` (or admin); 403 if
    not."""

    def check(caller: CallerDep) -> Caller:
        if not caller.allows(scope):
            raise PermissionDeniedError(
                f"API key {caller.key_id} lacks the {scope.value!r} scope; use a key created "
                f"with --scope {scope.value} (or --scope admin)"
            )
        return caller

    check.__name__ = f"require_{scope.value}"
    return check


ReadCaller = Annotated[Caller, Depends(require(Scope.READ))]
SubmitCaller = Annotated[Caller, Depends(require(Scope.SUBMIT))]
WorkerCaller = Annotated[Caller, Depends(require(Scope.WORKER))]
AdminCaller = Annotated[Caller, Depends(require(Scope.ADMIN))]


def job_of(store: Store, caller: Caller, job_id: str) -> JobRecord:
    """The caller's job ``job_id``; another project's job is a 404, exactly like a missing one."""
    job = store.get_job(job_id)
    if job is None or job.project != caller.project:
        raise UnknownNameError("job", job_id, (), hint="list your jobs with GET /v1/jobs")
    return job
