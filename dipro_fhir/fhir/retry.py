"""When and how long the FHIR client waits before trying a request again.

Transient answers (HTTP 429, 502, 503, 504) and connection failures are retried with
exponential backoff and jitter, so that many workers hitting one recovering server do not
retry in lock-step. A server's ``Retry-After`` header (RFC 9110 section 10.2.3: seconds or
an HTTP date) is honoured but capped, so a misconfigured server cannot stall a nightly run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures.

    Attributes:
        max_attempts: Total tries of one request, the first included (1 = no retries).
        backoff_s: Delay before the first retry; doubles on every further retry.
        max_backoff_s: Upper bound of the exponential delay.
        max_retry_after_s: Upper bound of a server's ``Retry-After``.
        jitter: Fraction of the delay that is randomised (0 = none, 1 = full jitter).
    """

    max_attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 120.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("delays must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must lie in [0, 1]")

    def delay_s(self, retry_number: int, retry_after: str | None = None) -> float:
        """Return the seconds to wait before retry ``retry_number`` (1 for the first).

        Args:
            retry_number: 1 before the first retry, 2 before the second, ...
            retry_after: The raw ``Retry-After`` header of the failed answer, if any.
        """
        server_s = parse_retry_after(retry_after)
        if server_s is not None:
            return min(server_s, self.max_retry_after_s)
        base = min(self.max_backoff_s, self.backoff_s * 2.0 ** (retry_number - 1))
        return base * (1.0 - self.jitter) + random.uniform(0.0, base * self.jitter)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After`` (delta-seconds or HTTP-date) into seconds from now.

    Returns ``None`` when the header is absent or unreadable; never a negative number.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
