"""Running a synthetic world night after night through the CLI's path (``run_locally`` on the
NDJSON and DICOM-folder sources, SQLite), with the monitor after each night, as the
``dipro_monitor`` DAG would run it after ``dipro_nightly``."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr

from dipro_fhir.core.settings import Settings, embedded_settings
from dipro_fhir.monitoring.night import NightResult, compute_night
from dipro_fhir.monitoring.outcomes import gather_outcomes
from dipro_fhir.run.pipeline import RunRequest, run_locally
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.synth.stream import NightlyWorld, write_night, write_world_images

#: The monitor runs a few hours after the night's scoring run.
MONITOR_DELAY = timedelta(hours=4)


def world_settings(
    world: NightlyWorld,
    folder: Path,
    checkpoint: Callable[[Path], Path],
    store_url: str | None = None,
) -> Settings:
    """Embedded settings over the world's films (written once), in shadow mode; the results
    database is ``store_url`` when given (else SQLite in ``folder``)."""
    write_world_images(world, folder / "films", image_size=(96, 96))
    settings = embedded_settings(folder)
    settings = settings.model_copy(
        update={
            "writeback": settings.writeback.model_copy(update={"shadow": True}),
            "run": settings.run.model_copy(update={"max_failed_share": 1.0}),
        }
    )
    if store_url is not None:
        store = settings.store.model_copy(update={"url": SecretStr(store_url)})
        settings = settings.model_copy(update={"store": store})
    upgrade_database(settings.store.url.get_secret_value())
    checkpoint(settings.model.checkpoint)
    return settings


def night_settings(settings: Settings, folder: Path) -> Settings:
    """The settings of one night: its FHIR files."""
    return settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": folder}),
            "dicomweb": settings.dicomweb.model_copy(update={"folder": folder / "dicom"}),
        }
    )


def run_nights(
    world: NightlyWorld, settings: Settings, nights: Iterable[int], folder: Path
) -> dict[int, list[NightResult]]:
    """Score each night, gather outcomes and compute the monitor's night; the results by night."""
    out = {}
    for k in nights:
        as_of = world.night(k)
        night_folder = folder / f"night-{k:02d}"
        write_night(world, as_of, night_folder, films=folder / "films")
        tonight = night_settings(settings, night_folder)
        run_locally(tonight, RunRequest(as_of=as_of, dag_run_id=f"night-{k}"))
        gather_outcomes(tonight, as_of + MONITOR_DELAY)
        out[k] = compute_night(tonight, as_of + MONITOR_DELAY)
        shutil.rmtree(night_folder)
    return out
