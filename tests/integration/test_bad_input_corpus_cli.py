"""The bad-input corpus (tests/data/bad-inputs) through ``dipro-fhir score`` on PostgreSQL.

Two runs of one night through the command line, on the real file sources: the clean cohort
and the damaged one (every kind of the corpus applied), each into its own PostgreSQL
database. The damaged run must not crash, must record every bad item against its own
patient (or as a problem of no patient), must give every good patient exactly the clean
run's scores, and must log no patient data.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from tests.checkpoints import write_tiny_checkpoint

CORPUS_DIR = Path(__file__).resolve().parents[1] / "data" / "bad-inputs"


def load_corpus() -> tuple[ModuleType, ModuleType]:
    """The corpus module and its kinds (loaded by path: the folder name has a hyphen)."""
    if "bad_inputs_corpus" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bad_inputs_corpus", CORPUS_DIR / "corpus.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    corpus = sys.modules["bad_inputs_corpus"]
    kinds = sys.modules.get("bad_inputs_kinds") or corpus.load("kinds")
    return corpus, kinds


def identifiers(cohort: Path, extra: tuple[str, ...] = ()) -> set[str]:
    """Every patient's ids, MRNs, names and birth dates, and every study and instance UID."""
    found: set[str] = set(extra)
    for line in (cohort / "Patient.ndjson").read_text().splitlines():
        patient = json.loads(line)
        found.add(patient["id"])
        found.update(i["value"] for i in patient.get("identifier", []))
        found.add(str(patient.get("birthDate")))
        for name in patient.get("name", []):
            found.update(name.get("given", []))
            found.add(name.get("family", ""))
    for line in (cohort / "truth.jsonl").read_text().splitlines():
        truth = json.loads(line)
        for image in truth["images"]:
            found.update((image["study_uid"], image["instance_uid"]))
    return {value for value in found if len(value) >= 6}


#: Ids only the damaged cohort holds (invalid ones that must never reach a log either).
BAD_IDS = ("a" * 65, "..%2Fmetadata?x=1", "john doe", "enc id/with*chars")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Any:
    module, kinds = load_corpus()
    return module.build(tmp_path_factory.mktemp("corpus"), kinds)


@pytest.fixture
def second_pg_url(pg_server: Any) -> Iterator[str]:
    from tests.servers.postgres import admin

    name = f"dipro_test_{uuid.uuid4().hex[:16]}"
    admin(pg_server, f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.url(name)
    finally:
        admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environ_for(cohort: Path, work: Path, store_url: str, limits: dict[str, int]) -> dict[str, str]:
    return {
        "DIPRO_FHIR__NDJSON_DIR": str(cohort),
        "DIPRO_DICOMWEB__FOLDER": str(cohort / "dicom"),
        "DIPRO_MODEL__CHECKPOINT": str(work / "checkpoint"),
        "DIPRO_RUN__STAGING_DIR": str(work / "staging"),
        "DIPRO_RUN__CHUNK_SIZE": "8",
        "DIPRO_RUN__LOG_SALT": "corpus-test-salt",
        "DIPRO_WRITEBACK__TARGET": "ndjson",
        "DIPRO_WRITEBACK__NDJSON_DIR": str(work / "results"),
        "DIPRO_STORE__URL": store_url,
        **{f"DIPRO_LIMITS__{k.upper()}": str(v) for k, v in limits.items()},
    }


def run_cli(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], as_of: str) -> int:
    from dipro_fhir import cli

    with monkeypatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        return cli.main(["-v", "-q", "score", "--as-of", as_of])


def scores_of(url: str) -> dict[str, dict[tuple[str, str], float]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT patient_id, task, outcome, probability FROM scores"))
        found: dict[str, dict[tuple[str, str], float]] = {}
        for patient, task, outcome, probability in rows:
            found.setdefault(patient, {})[(task, outcome)] = probability
    engine.dispose()
    return found


def recorded(url: str) -> dict[str, set[str]]:
    """Problem codes and failure reasons per patient ('' = no patient)."""
    engine = sa.create_engine(url)
    found: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for patient, code in conn.execute(
            sa.text(
                "SELECT patient_id, code FROM data_problems "
                "UNION SELECT patient_id, reason FROM patient_failures"
            )
        ):
            found.setdefault(patient, set()).add(code)
    engine.dispose()
    return found


@pytest.mark.slow
def test_the_corpus_through_the_cli_on_postgresql(
    corpus: Any,
    migrated_pg_url: str,
    second_pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dipro_fhir.store.migrate import upgrade_database

    module, kinds = load_corpus()
    assert len(kinds.KINDS) >= 40
    upgrade_database(second_pg_url)
    write_tiny_checkpoint(tmp_path / "checkpoint", name="corpus", version="1")
    as_of = module.AS_OF.isoformat()
    clean_env = environ_for(corpus.clean, tmp_path / "clean", migrated_pg_url, module.LIMITS)
    clean_env["DIPRO_MODEL__CHECKPOINT"] = str(tmp_path / "checkpoint")
    assert run_cli(monkeypatch, clean_env, as_of) == 0
    caplog.clear()
    capsys.readouterr()

    bad_env = environ_for(corpus.damaged, tmp_path / "bad", second_pg_url, module.LIMITS)
    bad_env["DIPRO_MODEL__CHECKPOINT"] = str(tmp_path / "checkpoint")
    with caplog.at_level(logging.DEBUG):
        code = run_cli(monkeypatch, bad_env, as_of)
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]  # 0 crashed runs

    clean, damaged = scores_of(migrated_pg_url), scores_of(second_pg_url)
    assert len(corpus.good) >= 10
    for patient in corpus.good:
        assert patient in clean, "a good patient was not scored in the clean run"
        assert damaged.get(patient) == clean[patient], "a good patient's scores changed"

    found = recorded(second_pg_url)
    missing = []
    for damage in corpus.damages:
        owner = "" if damage.patient is None else damage.patient
        if not found.get(owner, set()) & damage.codes:
            missing.append((damage.kind, sorted(damage.codes), sorted(found.get(owner, set()))))
        if damage.patient is not None:
            assert (damage.patient in damaged) == damage.scored, damage.kind
    assert not missing, f"bad items not recorded: {missing}"
    print(
        f"corpus: {len(kinds.KINDS)} kinds, {len(corpus.good)} good patients identical, "
        f"{len(corpus.damages)} bad items recorded, "
        f"{sum(1 for d in corpus.damages if d.patient is None)} of them as no patient"
    )

    secrets = identifiers(corpus.damaged, BAD_IDS)
    texts = [r.getMessage() for r in caplog.records] + [out.out, out.err]
    for record in caplog.records:
        if record.exc_text:
            texts.append(record.exc_text)
    assert len(caplog.records) > 20
    leaks = {s for s in secrets for t in texts if s in t}
    assert not leaks, f"patient data in the output: {sorted(leaks)[:5]}"
