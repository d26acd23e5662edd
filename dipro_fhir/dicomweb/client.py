"""A DICOMweb client with our timeouts, retries, auth and error types.

Wraps dicomweb-client's ``DICOMwebClient`` (QIDO-RS, WADO-RS, STOW-RS; PS3.18 10.4-10.6)
with an injected ``requests.Session``. The library's own retrying is switched off: every
call goes through :meth:`DicomWebClient._call`, which retries 429/502/503/504 and
connection failures, bodies cut short (``ChunkedEncodingError``) and malformed 200 answers
(JSON or multipart that does not parse) with :class:`~dipro_fhir.fhir.retry.RetryPolicy`
(exponential backoff, ``Retry-After``); what stays malformed after the retries is
``SourceUnavailable``; JSON nested past the limit is a data problem
(:class:`~dipro_fhir.core.limits.InputLimitExceeded`). It maps the final HTTP status with
:func:`~dipro_fhir.fhir.status.error_for_status` (404 -> ``ResourceNotFound`` ...).

Server quirks handled here (Orthanc 1.10, see shared/ENVIRONMENT.md): no wildcards in
QIDO (dicomweb-client percent-encodes ``*`` and Orthanc matches it literally); whole
instances are read with ``retrieve_instance`` (the streaming ``iter_*`` calls re-scan one
large multipart body quadratically); frames need an explicit transfer syntax in Accept.
Logs hold operation names, counts, durations and status codes only, never URLs or UIDs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dipro_fhir.core.errors import SourceUnavailable
from dipro_fhir.core.limits import InputLimitExceeded
from dipro_fhir.fhir.auth import BasicAuth, BearerTokenAuth, Secret
from dipro_fhir.fhir.retry import RETRYABLE_STATUSES, RetryPolicy
from dipro_fhir.fhir.status import error_for_status

log = logging.getLogger(__name__)
T = TypeVar("T")
Json = dict[str, Any]

#: Explicit VR Little Endian: what frame retrieval asks for (PS3.18 8.7.3.5.2).
FRAME_MEDIA_TYPE = ("application/octet-stream", "1.2.840.10008.1.2.1")
#: A connection lost mid-answer, or a body cut short of its length: worth another try.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
#: What a 200 answer with a garbled body raises inside dicomweb-client and pydicom
#: (JSONDecodeError is a ValueError; a cut multipart or Part 10 stream raises these).
MALFORMED_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    InvalidDicomError,
)


def check_instance(ds: Dataset, instance_uid: str) -> Dataset:
    """Return ``ds`` when it is the whole instance asked for.

    A 200 whose multipart body was cut or garbled still parses into a (partial) dataset;
    it must name the SOP Instance UID asked for, and uncompressed Pixel Data must be as long
    as Rows x Columns x Samples x Bits Allocated say.

    Raises:
        ValueError: It is not (:meth:`DicomWebClient._call` retries it as malformed).
    """
    if str(ds.get("SOPInstanceUID", "")) != instance_uid:
        raise ValueError("the answer is not the instance asked for (cut or garbled)")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if "PixelData" in ds and syntax is not None and not syntax.is_compressed:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.get("BitsAllocated", 8))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if len(ds.PixelData) < rows * columns * samples * frames * bits // 8:
            raise ValueError("the instance's Pixel Data is cut short")
    return ds


class DicomWebClient:
    """QIDO/WADO/STOW against one DICOMweb base URL, with retries and mapped errors.

    Args:
        base_url: DICOMweb service root, e.g. ``http://pacs/dicom-web``.
        session: Session to send requests with (connection pooling, TLS settings, proxies).
        timeout_s: Connect and read timeout per request.
        retry: Retry policy for transient failures.
        username: HTTP Basic user (with ``password``).
        password: HTTP Basic password.
        token: Bearer token (instead of Basic).
        sleep: Sleep function (tests pass a recorder).
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        username: str | None = None,
        password: Secret | None = None,
        token: Secret | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._session = session or requests.Session()
        if token is not None:
            self._session.auth = BearerTokenAuth(token)
        elif username is not None and password is not None:
            self._session.auth = BasicAuth(username, password)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._web = DICOMwebClient(
            url=base_url.rstrip("/"), session=self._session, timeout=timeout_s
        )
        self._web.set_http_retry_params(retry=False)
        #: Response body bytes received, per action (``"WADO instance"``, ``"QIDO series"`` ...).
        self.bytes_received: dict[str, int] = {}
        #: Wall seconds of successful calls (retries included), per action.
        self.seconds_by_action: dict[str, float] = {}
        self._received = 0
        self._session.hooks.setdefault("response", []).append(self._count_bytes)

    def _count_bytes(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """Session hook: add up body sizes (the body is read here once and kept)."""
        self._received += len(response.content)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        """Run one library call with retries; map failures to our exceptions."""
        started = time.monotonic()
        for attempt in range(1, self._retry.max_attempts + 1):
            before = self._received
            try:
                result = fn()
            except requests.HTTPError as exc:
                response = exc.response  # a Response is falsy for 4xx/5xx: test for None
                status = response.status_code if response is not None else 0
                retry_after = response.headers.get("Retry-After") if response is not None else None
                if status in RETRYABLE_STATUSES and attempt < self._retry.max_attempts:
                    log.info("%s: HTTP %s, retry %d", action, status, attempt)
                    self._sleep(self._retry.delay_s(attempt, retry_after))
                    continue
                raise error_for_status(status, None, action=action, attempts=attempt) from exc
            except RecursionError as exc:
                raise InputLimitExceeded(f"{action}: JSON nested too deep") from exc
            except (*TRANSIENT_ERRORS, *MALFORMED_ERRORS) as exc:
                if attempt < self._retry.max_attempts:
                    log.info("%s: %s, retry %d", action, type(exc).__name__, attempt)
                    self._sleep(self._retry.delay_s(attempt))
                    continue
                raise SourceUnavailable(
                    f"{action}: {type(exc).__name__} after {attempt} attempts"
                ) from exc
            log.debug("%s: ok in %.0f ms", action, 1e3 * (time.monotonic() - started))
            received = self._received - before
            self.bytes_received[action] = self.bytes_received.get(action, 0) + received
            spent = time.monotonic() - started
            self.seconds_by_action[action] = self.seconds_by_action.get(action, 0.0) + spent
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def search_series(
        self, *, study_uid: str | None = None, filters: dict[str, str] | None = None
    ) -> list[Json]:
        """QIDO-RS series search (PS3.18 10.6), all pages, as DICOM JSON."""
        result: list[Json] = self._call(
            "QIDO series",
            lambda: self._web.search_for_series(
                study_instance_uid=study_uid,
                search_filters=filters or None,
                get_remaining=True,
            ),
        )
        log.info("QIDO series: %d results", len(result))
        return result

    def search_instances(self, study_uid: str, series_uid: str) -> list[Json]:
        """QIDO-RS instance search in one series, all pages."""
        return list(
            self._call(
                "QIDO instances",
                lambda: self._web.search_for_instances(
                    study_instance_uid=study_uid,
                    series_instance_uid=series_uid,
                    get_remaining=True,
                ),
            )
        )

    def series_metadata(self, study_uid: str, series_uid: str) -> list[Json]:
        """WADO-RS metadata of every instance of a series (no pixels)."""
        return list(
            self._call(
                "WADO series metadata",
                lambda: self._web.retrieve_series_metadata(
                    study_instance_uid=study_uid, series_instance_uid=series_uid
                ),
            )
        )

    def retrieve_instance(self, study_uid: str, series_uid: str, instance_uid: str) -> Dataset:
        """WADO-RS one whole instance (any transfer syntax the server stores)."""
        started = time.monotonic()

        def retrieve() -> Dataset:
            found: Dataset = self._web.retrieve_instance(
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                sop_instance_uid=instance_uid,
                media_types=(("application/dicom", "*"),),
            )
            return check_instance(found, instance_uid)

        ds: Dataset = self._call("WADO instance", retrieve)
        log.info("WADO instance: %.0f ms", 1e3 * (time.monotonic() - started))
        return ds

    def retrieve_frames(
        self, study_uid: str, series_uid: str, instance_uid: str, frames: Sequence[int]
    ) -> list[bytes]:
        """WADO-RS frames as uncompressed bytes (explicit transfer syntax in Accept)."""
        return list(
            self._call(
                "WADO frames",
                lambda: self._web.retrieve_instance_frames(
                    study_instance_uid=study_uid,
                    series_instance_uid=series_uid,
                    sop_instance_uid=instance_uid,
                    frame_numbers=list(frames),
                    media_types=(FRAME_MEDIA_TYPE,),
                ),
            )
        )

    def store(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS (PS3.18 10.5); every dataset needs a preamble and file meta."""
        self._call("STOW", lambda: self._web.store_instances(datasets=list(datasets)))
        log.info("STOW: %d instances", len(datasets))
