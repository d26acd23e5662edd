"""Retries for the results database, as FHIR and DICOMweb have them.

A PostgreSQL restart, a failover or a dropped connection costs a night nothing when it
lasts less than :attr:`StoreRetry.window_s`: each store operation that fails with a
*transient* error (the connection was lost or refused, a server shutting down, SQLite's
"database is locked") is repeated with backoff on a fresh connection (the engine's
``pool_pre_ping`` replaces dead pooled connections). Every store operation is idempotent
(upserts by natural key, ``ON CONFLICT DO NOTHING``), so repeating one whose commit was lost
in flight writes nothing twice. Past the window the error is raised as
:class:`~dipro_fhir.core.errors.SourceUnavailable` (retriable: the task or the next run
repairs it). Errors that are not transient (a missing schema, a refused row) are raised at
once.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from dipro_fhir.core.errors import SourceUnavailable

_LOG = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoreRetry:
    """How long and how often a store operation is repeated on transient errors.

    Attributes:
        window_s: Give up when the next try would start later than this after the first
            (0: no retries).
        first_delay_s: The first pause; it doubles up to ``max_delay_s``.
        max_delay_s: The longest pause.
    """

    window_s: float = 60.0
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0


DEFAULT_RETRY = StoreRetry()
NO_RETRY = StoreRetry(window_s=0.0)


def is_transient(error: BaseException, engine: Engine) -> bool:
    """Whether ``error`` may pass by itself: a lost or refused connection (PostgreSQL), a
    locked database (SQLite)."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    if engine.dialect.name == "sqlite":  # "no such table" is an OperationalError there too
        return "locked" in str(error.orig)
    return True


def call_with_retry(engine: Engine, policy: StoreRetry, what: str, call: Callable[[], T]) -> T:
    """``call()``, repeated on transient errors within ``policy``.

    Raises:
        SourceUnavailable: The database stayed unreachable for the whole window.
    """
    started = time.monotonic()
    delay = policy.first_delay_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except DBAPIError as exc:
            if not is_transient(exc, engine):
                raise
            waited = time.monotonic() - started
            if waited + delay > policy.window_s:
                raise SourceUnavailable(
                    f"the results database stayed unreachable for {waited:.0f} s "
                    f"({what}: {type(exc.orig).__name__}, {attempt} attempts)"
                ) from None
            _LOG.warning(
                "results database: %s failed (%s), attempt %d; retrying in %.1f s",
                what,
                type(exc.orig).__name__,
                attempt,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, policy.max_delay_s)


class _HasEngine(Protocol):
    engine: Engine
    retry: StoreRetry


S = TypeVar("S", bound=_HasEngine)


def retried(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """Decorate a store method: it runs under :func:`call_with_retry` with the store's
    ``retry`` policy."""

    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return call_with_retry(
            self.engine, self.retry, method.__name__, lambda: method(self, *args, **kwargs)
        )

    functools.update_wrapper(wrapper, method)
    return wrapper
