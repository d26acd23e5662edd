"""Logging without patient data.

Library modules call ``logging.getLogger(__name__)`` and log counts, durations, status codes
and run ids. When one patient must be correlated across log lines, log
:func:`patient_tag` of its id: a salted, truncated hash. The salt is secret and per site
(``run.log_salt``); without one, each process draws a random salt (:func:`site_salt`), so a
tag can never be reversed by enumerating ids against a public constant.

Handlers are configured only by entry points: :func:`configure` for the command line,
:func:`configure_task` inside an Airflow task (Airflow owns the handlers there). Both hold
third-party clients that log URLs, UIDs or file paths (``dicomweb_client``, ``pydicom``,
``urllib3`` ...) at WARNING and attach :class:`RedactFilter`, which blanks DICOM UIDs and
file paths in what those loggers still emit.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets

_PROCESS_SALT = secrets.token_hex(16)

#: Third-party loggers that log request URLs, headers, UIDs or file paths below WARNING.
NOISY_LOGGERS = (
    "urllib3",
    "dicomweb_client",
    "requests",
    "fhir",
    "fhir_core",
    "openjpeg",
    "pydicom",
    "PIL",
)
#: Third-party loggers that only chatter at INFO (Alembic announces each autogenerate plugin
#: when imported, which every command that touches the results schema does).
CHATTY_LOGGERS = ("alembic.runtime.plugins",)
_UID = re.compile(r"\b\d+(?:\.\d+){3,}\b")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/'\"]+){2,}/?")


def site_salt(configured: str | None) -> str:
    """The configured salt, or this process's random one."""
    return configured if configured else _PROCESS_SALT


def patient_tag(patient_id: str, salt: str | None = None) -> str:
    """Return a 12-hex-digit salted hash that stands for a patient in logs."""
    digest = hashlib.sha256(f"{site_salt(salt)}:{patient_id}".encode()).hexdigest()
    return f"p-{digest[:12]}"


def redact(text: str) -> str:
    """Blank DICOM UIDs (dotted numbers) and file paths in ``text``."""
    return _PATH.sub("<path>", _UID.sub("<uid>", text))


class RedactFilter(logging.Filter):
    """Rewrites third-party records (:data:`NOISY_LOGGERS` and their children, and
    ``py.warnings``) with :func:`redact`; the project's own records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        top = record.name.split(".", 1)[0]
        if top not in NOISY_LOGGERS and top != "py":
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:  # a traceback may quote paths and UIDs: keep its type only
            exc = record.exc_info[1]
            record.msg += f" ({type(exc).__name__})" if exc is not None else ""
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_third_parties() -> None:
    for name in (*NOISY_LOGGERS, *CHATTY_LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # warnings.warn (pydicom's) become py.warnings records
    # Logger filters do not apply to child loggers; handler filters see every record.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())


def configure(level: int | str = logging.INFO) -> None:
    """Configure the root logger for a command-line entry point."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _quiet_third_parties()


def configure_task() -> None:
    """Apply the project's log rules inside an Airflow task (handlers stay Airflow's)."""
    _quiet_third_parties()
