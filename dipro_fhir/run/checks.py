"""``dipro-fhir check``: can this deployment reach and use everything it is configured for?

Each check makes one small real request (FHIR ``/metadata`` and a one-resource search,
a DICOMweb QIDO query, ``SELECT 1`` plus the schema revision, the checkpoint card) and turns
the outcome into one line a person can act on. Credentials never appear in the output.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from dipro_fhir.core.errors import AuthError, DiproFhirError
from dipro_fhir.core.settings import Settings
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.run import connections

#: The resource types a run cannot do without.
NDJSON_NEEDED = ("Patient", "Encounter", "Observation")

CheckResult = tuple[str, bool, str]


def _fhir(settings: Settings) -> str:
    if not settings.fhir.base_url:
        source = connections.fhir_source(settings)
        next(iter(source.active_encounter_patients(datetime.now(UTC))), None)
        if not isinstance(source, NdjsonFhirSource):
            return f"NDJSON folder {settings.fhir.ndjson_dir}"
        by_type = source.catalog.by_type
        missing = [t for t in NDJSON_NEEDED if t not in by_type]
        if missing:
            raise DiproFhirError(
                f"no file in NDJSON folder {settings.fhir.ndjson_dir} holds "
                f"{', '.join(missing)} resources (*.ndjson and *.ndjson.gz are read; a file's "
                "type is its first line's resourceType)"
            )
        files = ", ".join(f"{t} {len(paths)}" for t, paths in sorted(by_type.items()))
        unreadable = len(source.catalog.unreadable)
        return f"NDJSON folder {settings.fhir.ndjson_dir}; files by type: {files}" + (
            f"; {unreadable} file(s) unreadable" if unreadable else ""
        )
    with connections.fhir_client(settings.fhir) as client:
        caps = client.capabilities()
        version = caps.get("fhirVersion", "?")
        client.count("Patient", {"_count": "1"})
    if not str(version).startswith("4.0"):
        raise DiproFhirError(f"server speaks FHIR {version}; dipro-fhir needs R4 (4.0.x)")
    return f"FHIR {version}, Patient search allowed"


def public_url(url: str) -> str:
    """``url`` without credentials (``user:password@``) and without a query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _dicomweb(settings: Settings) -> str:
    source = connections.image_source(settings.dicomweb)
    source.studies_for_patient("dipro-fhir-connectivity-check")
    base = settings.dicomweb.base_url
    where = public_url(base) if base else settings.dicomweb.folder
    return f"QIDO-RS answered ({'server' if settings.dicomweb.base_url else 'folder'} {where})"


def _database(settings: Settings) -> str:
    engine = connections.engine(settings)
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise DiproFhirError(
            f"unreachable ({type(exc.orig).__name__}): {engine.url.render_as_string()}"
        ) from None
    with conn:
        conn.execute(text("SELECT 1"))
        try:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError as exc:
            raise DiproFhirError(
                "reachable, but no results schema: run `dipro-fhir db upgrade`"
            ) from exc
    return f"{engine.dialect.name}, schema revision {revision}"


def _checkpoint(settings: Settings) -> str:
    from dipro_fhir.scoring.card import read_model_card
    from dipro_fhir.scoring.gate import check_validation

    card = read_model_card(settings.model.checkpoint)
    check_validation(card, settings.model, settings.model.checkpoint)
    patients = card.validation["patients"]["examples"]
    mode = "shadow mode: results database only" if settings.writeback.shadow else "live"
    return (
        f"{card.name} {card.version} ({', '.join(card.tasks)}), validated on {patients} "
        f"held-out patients; {mode}"
    )


CHECKS: tuple[tuple[str, Callable[[Settings], str]], ...] = (
    ("fhir", _fhir),
    ("dicomweb", _dicomweb),
    ("database", _database),
    ("model", _checkpoint),
)


def run_checks(settings: Settings) -> list[CheckResult]:
    """Run every check; return ``(name, ok, detail)`` per check."""
    results: list[CheckResult] = []
    for name, check in CHECKS:
        try:
            results.append((name, True, check(settings)))
        except AuthError as exc:
            results.append((name, False, f"credentials refused ({exc.status}): check the secret"))
        except DiproFhirError as exc:
            results.append((name, False, str(exc)))
        except (OSError, SQLAlchemyError) as exc:
            results.append((name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}"))
    return results
