"""What the ``dipro-fhir`` commands share: parsing times, patient ids and progress bars."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dipro_fhir.core.errors import ConfigError


def as_of(text: str | None) -> datetime:
    """An ISO 8601 time (UTC when it names no zone), or now without microseconds.

    Raises:
        ConfigError: The text is not an ISO 8601 time.
    """
    if not text:
        return datetime.now(UTC).replace(microsecond=0)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{text!r} is not an ISO 8601 time (for example 2026-11-28T02:00:00+01:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def fhir_id(text: str) -> str:
    """An argparse type: a FHIR id (1-64 of A-Z a-z 0-9 - .), else a usage error."""
    from dipro_fhir.core.limits import is_fhir_id

    if not is_fhir_id(text):
        raise argparse.ArgumentTypeError(
            f"not a FHIR id ({len(text)} characters; 1-64 of A-Z a-z 0-9 - . are allowed)"
        )
    return text


def patients_file(path: str) -> list[str]:
    """The patient ids of a file, one per line (blank lines skipped).

    Raises:
        ConfigError: The file cannot be read, or a line is not a FHIR id (its number is
            named, not its text).
    """
    from dipro_fhir.core.limits import is_fhir_id

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"patients file {path}: {exc}") from exc
    ids = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not is_fhir_id(line.strip()):
            raise ConfigError(f"patients file {path}, line {number}: not a FHIR id")
        ids.append(line.strip())
    return ids


def patient_ids(args: argparse.Namespace) -> list[str]:
    """The ``--patient`` ids, then those of ``--patients-file`` (if given)."""
    ids = list(args.patient or ())
    if args.patients_file:
        ids += patients_file(args.patients_file)
    return ids


def show_progress(quiet: bool, desc: str) -> Any:
    """A tqdm progress bar counting patients, hidden when ``quiet``."""
    from tqdm import tqdm

    return tqdm(desc=desc, unit="patient", disable=quiet)
