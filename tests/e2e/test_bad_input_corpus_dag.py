"""The bad-input corpus through the real DAG: ``airflow dags test`` at DEBUG, on PostgreSQL.

The clean cohort is scored once through the command line (reference scores); the damaged
cohort through ``airflow dags test dipro_nightly <as-of>`` in a subprocess, with every logger
at DEBUG. The run must succeed, record every bad item, keep every good patient's scores, and
no log Airflow wrote (its output and every file under its log folder) may hold a patient id,
name, birth date or UID.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.conftest import VENV_BIN, AirflowEnv
from tests.integration.test_bad_input_corpus_cli import (
    BAD_IDS,
    environ_for,
    identifiers,
    load_corpus,
    recorded,
    run_cli,
    scores_of,
)
from tests.integration.test_bad_input_corpus_cli import corpus as corpus
from tests.integration.test_bad_input_corpus_cli import second_pg_url as second_pg_url


def _log_texts(home: Path, output: str) -> list[tuple[str, str]]:
    texts = [("output", output)]
    for path in sorted((home / "logs").rglob("*")) if (home / "logs").exists() else []:
        if path.is_file():
            texts.append((str(path.relative_to(home)), path.read_text(errors="replace")))
    return texts


@pytest.mark.e2e
@pytest.mark.slow
def test_the_corpus_through_airflow_dags_test_logs_no_patient_data(
    airflow_env: AirflowEnv,
    corpus: Any,
    migrated_pg_url: str,
    second_pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dipro_fhir.store.migrate import upgrade_database

    module, _kinds = load_corpus()
    upgrade_database(second_pg_url)
    write_tiny_checkpoint(tmp_path / "checkpoint", name="corpus", version="1")
    clean_env = environ_for(corpus.clean, tmp_path / "clean", migrated_pg_url, module.LIMITS)
    clean_env["DIPRO_MODEL__CHECKPOINT"] = str(tmp_path / "checkpoint")
    assert run_cli(monkeypatch, clean_env, module.AS_OF.isoformat()) == 0

    bad_env = environ_for(corpus.damaged, tmp_path / "bad", second_pg_url, module.LIMITS)
    bad_env["DIPRO_MODEL__CHECKPOINT"] = str(tmp_path / "checkpoint")
    environ = {
        **airflow_env.environ,
        **bad_env,
        "DIPRO_TASK_RETRIES": "0",
        "DIPRO_SCHEDULE": "none",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
    }
    for conn_id in ("DIPRO_FHIR", "DIPRO_DICOMWEB", "DIPRO_RESULTS_DB"):
        environ.pop(f"AIRFLOW_CONN_{conn_id}", None)
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), "dags", "test", "dipro_nightly", module.AS_OF.isoformat()],
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "[debug" in output.lower()  # the run really logged at DEBUG
    # Airflow logs every task's return value (XCom): they are staged-manifest references.
    assert "Returned value was" in output
    assert "'stash':" in output

    clean, damaged = scores_of(migrated_pg_url), scores_of(second_pg_url)
    for patient in corpus.good:
        assert damaged.get(patient) == clean[patient], "a good patient's scores changed"
    found = recorded(second_pg_url)
    missing = [
        d.kind
        for d in corpus.damages
        if not found.get("" if d.patient is None else d.patient, set()) & d.codes
    ]
    assert not missing, f"bad items not recorded: {missing}"

    secrets = identifiers(corpus.damaged, BAD_IDS)
    texts = _log_texts(airflow_env.home, output)
    leaks = {(name, s) for name, text in texts for s in secrets if s in text}
    print(f"dags test: {len(texts)} logs, {sum(len(t) for _, t in texts)} characters searched")
    assert not leaks, f"patient data in Airflow's logs: {sorted(leaks)[:5]}"
