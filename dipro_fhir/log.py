"""Logging without patient data.

Library modules call ``logging.getLogger(__name__)`` and log counts, durations, status codes
and run ids. When one patient must be correlated across log lines, log
:func:`patient_tag` of its id: a salted, truncated hash that is stable within a deployment
(the salt comes from settings) but says nothing about the patient. Handlers are configured
only by entry points (:func:`configure`).
"""

from __future__ import annotations

import hashlib
import logging

_DEFAULT_SALT = "dipro-fhir"


def patient_tag(patient_id: str, salt: str = _DEFAULT_SALT) -> str:
    """Return a 12-hex-digit salted hash that stands for a patient in logs."""
    digest = hashlib.sha256(f"{salt}:{patient_id}".encode()).hexdigest()
    return f"p-{digest[:12]}"


def configure(level: int | str = logging.INFO) -> None:
    """Configure the root logger for a command-line entry point."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Third-party clients that log request URLs or headers (which carry patient ids in
    # FHIR search parameters) are held at WARNING.
    for noisy in ("urllib3", "dicomweb_client", "requests", "fhir", "fhir_core", "openjpeg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
