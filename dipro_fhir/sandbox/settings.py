"""The sandbox's saved settings (``up --env KEY=VALUE``): merged, applied, shown.

A setting given to ``up`` is merged into those saved in ``sandbox.json`` and kept for every
later ``up``; ``--env KEY=`` (an empty value) drops ``KEY``. The settings must never be saved
without being applied: every Airflow process records, beside its pid file, a digest of each
setting it was started with (``run/<service>.settings.json``; digests, so the Fernet key and
JWT secret are not written twice), and ``up`` restarts a running process whose recorded
settings differ from what it would be started with now (:func:`changed_keys`). ``env`` prints
the saved ``DIPRO_*`` settings with the sandbox's own, so the ``dipro-fhir`` CLI (``check``)
sees what the DAG's tasks see.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

from dipro_fhir.sandbox.core import Sandbox


def merge_env(saved: Mapping[str, str], changes: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The saved settings with ``changes`` applied in order; an empty value drops the key."""
    merged = dict(saved)
    for key, value in changes:
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _digests(settings: Mapping[str, str]) -> dict[str, str]:
    return {k: hashlib.sha256(v.encode()).hexdigest()[:16] for k, v in sorted(settings.items())}


def _record(sandbox: Sandbox, service: str) -> Path:
    return sandbox.path("run", f"{service}.settings.json")


def record_started(sandbox: Sandbox, service: str, settings: Mapping[str, str]) -> None:
    """Remember the settings ``service`` was started with (as digests)."""
    path = _record(sandbox, service)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_digests(settings), indent=1) + "\n")


def changed_keys(sandbox: Sandbox, service: str, settings: Mapping[str, str]) -> list[str] | None:
    """The keys whose value differs from what ``service`` was started with (set, changed or
    dropped), sorted; None when it was started without a record (before records were kept)."""
    try:
        started: dict[str, str] = json.loads(_record(sandbox, service).read_text())
    except (OSError, ValueError):
        return None
    now = _digests(settings)
    return sorted(k for k in started.keys() | now.keys() if started.get(k) != now.get(k))


def forget_started(sandbox: Sandbox, service: str) -> None:
    _record(sandbox, service).unlink(missing_ok=True)


def shell_exports(values: Mapping[str, str], venv_bin: str, saved: Mapping[str, str]) -> list[str]:
    """Lines for ``eval`` in a POSIX shell: the venv's ``bin`` first on ``PATH`` (where
    ``dipro-fhir`` is), the sandbox's endpoints and settings, then the saved ``DIPRO_*``
    settings (they win, as they do in the Airflow processes). ``AIRFLOW__*`` settings are
    named in a comment only: they mean nothing to the ``dipro-fhir`` CLI."""
    lines = [f'export PATH={shlex.quote(venv_bin)}:"$PATH"']
    lines += [f"export {k}={shlex.quote(v)}" for k, v in values.items() if k not in saved]
    dipro = {k: v for k, v in sorted(saved.items()) if k.startswith("DIPRO_")}
    if saved:
        lines.append("# saved with `up --env` (drop one with `up --env KEY=`):")
    lines += [f"export {k}={shlex.quote(v)}" for k, v in dipro.items()]
    lines += [f"# {k}: for the Airflow processes only" for k in sorted(saved) if k not in dipro]
    return lines
