"""A run's parameters, as the Airflow trigger form or the REST API sends them, checked into a
:class:`~dipro_fhir.core.manifest.RunRequest`.

Every parameter of ``dipro_nightly`` is optional: an empty form (every field cleared, which
the form sends as ``null``; a blank line in the id list) scores the active cohort as of the
run's logical date. Ids are checked here, in the ``plan`` task, rather than by a pattern in
the parameter's JSON schema: Airflow reports a schema mismatch as a dump of the regular
expression and the schema, where this says in one line which parameter is wrong and what an
id may be. The line never quotes the id (a mistyped id may be an MRN), like the CLI's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, get_args

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.limits import is_fhir_id
from dipro_fhir.core.manifest import Cohort, RunKind, RunRequest, as_of_for_logical_date

#: What an id may be, in the words of the error (FHIR R4 ``id`` datatype).
ID_RULE = "1-64 of A-Z a-z 0-9 - ."
COHORTS: tuple[Cohort, ...] = get_args(Cohort)


def run_request_from_params(
    params: Mapping[str, Any],
    *,
    logical_date: datetime,
    dag_run_id: str,
    kind: RunKind,
    site_timezone: str = "UTC",
) -> RunRequest:
    """The request the trigger form's ``params`` ask for.

    Args:
        params: The run's parameters (missing or ``null`` ones take their defaults).
        logical_date: The run's logical date (for a manual run without one, when it was
            triggered): the as-of time unless ``as_of`` overrides it.
        dag_run_id: Airflow's run id.
        kind: What started the run.
        site_timezone: How a time without an offset is read.

    Raises:
        ConfigError: A parameter is malformed; one line naming it and the rule.
    """
    as_of_text = _text(params.get("as_of"))
    if as_of_text:
        try:
            moment = datetime.fromisoformat(as_of_text)
        except ValueError:
            raise ConfigError(
                f"as_of: {as_of_text!r} is not an ISO 8601 date-time "
                "(for example 2026-11-24T02:00:00Z)"
            ) from None
    else:
        moment = logical_date
    cohort = _text(params.get("cohort")) or "active"
    if cohort not in COHORTS:
        raise ConfigError(f"cohort: {cohort!r} is not one of {', '.join(COHORTS)}")
    group_id = _text(params.get("group_id")) or None
    if group_id is not None and not is_fhir_id(group_id):
        raise ConfigError(
            f"group_id is not a FHIR id ({len(group_id)} characters; {ID_RULE} are allowed)"
        )
    return RunRequest(
        as_of=as_of_for_logical_date(moment, site_timezone),
        dag_run_id=dag_run_id,
        cohort=cohort,  # narrowed by the check against COHORTS above
        patient_ids=_patient_ids(params.get("patient_ids")),
        group_id=group_id,
        dry_run=bool(params.get("dry_run")),
        model_version=_text(params.get("model_version")) or None,
        kind=kind,
    )


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _patient_ids(value: Any) -> tuple[str, ...]:
    """The listed ids, blank entries dropped, in order, each once."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError("patient_ids must be a list of Patient ids, one per line in the form")
    ids: list[str] = []
    for position, item in enumerate(value, start=1):
        text = item.strip() if isinstance(item, str) else None
        if text == "":
            continue
        if text is None or not is_fhir_id(text):
            size = f"{len(text)} characters; " if text is not None else ""
            raise ConfigError(
                f"patient_ids, entry {position}, is not a FHIR id ({size}{ID_RULE} are allowed)"
            )
        ids.append(text)
    return tuple(dict.fromkeys(ids))
