"""Bring a results database to the newest schema with Alembic, programmatically.

The Alembic scripts ship inside the package (``dipro_fhir/store/migrations/``, package data),
so a checkout, an editable install and a wheel all find them beside this module;
``alembic.ini`` at the repository root points there, so ``alembic upgrade head`` works from a
checkout too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.exc import OperationalError

from dipro_fhir.core.errors import ConfigError, SourceUnavailable

_LOG = logging.getLogger(__name__)

#: ``dipro_fhir/store/migrations``: beside this module, in a checkout and in an installed wheel.
DEFAULT_SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str, script_location: Path | None = None) -> Config:
    """Return an Alembic :class:`Config` for ``url`` without reading ``alembic.ini``.

    Raises:
        ConfigError: The migration scripts are not where expected.
    """
    location = script_location or DEFAULT_SCRIPT_LOCATION
    if not (location / "env.py").is_file():
        raise ConfigError(
            f"Alembic scripts not found at {location}; pass script_location "
            "(the repository's migrations/ folder)"
        )
    config = Config()
    config.set_main_option("script_location", str(location))
    # '%' is Alembic's interpolation character; a URL-encoded password may contain it.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_database(
    url: str | Engine, revision: str = "head", script_location: Path | None = None
) -> None:
    """Run ``alembic upgrade <revision>`` on ``url`` (a URL string or an engine).

    Raises:
        ConfigError: The migration scripts are not found.
        SourceUnavailable: The database does not take a connection (its URL in the message
            without the password).
    """
    engine = create_engine(url) if isinstance(url, str) else url
    config = alembic_config(engine.url.render_as_string(hide_password=False), script_location)
    try:
        connection = engine.connect()
    except OperationalError as exc:
        reason = (str(exc.orig).strip().splitlines() or [""])[0]
        raise SourceUnavailable(
            f"results database {engine.url.render_as_string()} unreachable "
            f"({type(exc.orig).__name__}: {reason})"
        ) from None  # the chained error would print the URL with its password
    try:
        with connection, connection.begin():
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        if isinstance(url, str):
            engine.dispose()
    _LOG.info("results database at revision %s", revision)


def downgrade_database(
    url: str | Engine, revision: str = "base", script_location: Path | None = None
) -> None:
    """Run ``alembic downgrade <revision>`` on ``url`` (used by tests and rollbacks)."""
    engine = create_engine(url) if isinstance(url, str) else url
    config = alembic_config(engine.url.render_as_string(hide_password=False), script_location)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
    if isinstance(url, str):
        engine.dispose()


def table_names(engine: Engine) -> set[str]:
    """Return the tables present in the database (for checks and tests)."""
    return set(inspect(engine).get_table_names())
