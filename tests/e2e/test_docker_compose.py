"""docker-compose.yml for real: the stack built and run in Docker completes nights.

Opt-in (``DIPRO_DOCKER_E2E=1``; ``scripts/docker_e2e.sh`` starts the project's engine and
runs this): a build takes minutes and GBs, so the default test run leaves it out. Against the
engine of ``DOCKER_HOST``, with a project name of its own and free host ports, a module
fixture builds the images, brings the stack up with the ``scoring`` profile (a second Celery
worker serves the scoring queue; the first serves ``default`` only), waits on the health
checks and loads a synthetic cohort with ``dipro-fhir synth load`` inside the worker
(DICOMweb with Basic auth, as the compose Orthanc wants). Then:

* every long-running service is healthy and the one-shot services completed;
* HAPI keeps the cohort in the compose PostgreSQL;
* the night the scheduler starts when the DAG is unpaused, and a night triggered over
  Airflow's REST API, score every patient in the ICU then: exactly one RiskAssessment per
  patient and task on HAPI, each a target of a Provenance, and score rows in PostgreSQL;
  ``score`` ran on the scoring worker, the other tasks on the first worker;
* a three-night backfill during which the first worker's container is restarted once (a
  warm shutdown: it finishes its tasks first) succeeds with every night scored exactly once
  and no task tried twice;
* the Airflow UI served from the container, signed in, shows a run (a screenshot);
* ``docker compose down -v`` leaves no container, volume or network of the project.

The figures (build, ``up``, load, up to the first night done) go to
``var/docker-e2e/figures.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from tests.e2e.docker_stack import REPO, ComposeStack

pytestmark = [
    pytest.mark.docker,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DIPRO_DOCKER_E2E") != "1",
        reason="builds and runs the Docker stack: DIPRO_DOCKER_E2E=1 (scripts/docker_e2e.sh)",
    ),
]

DAG_ID = "dipro_nightly"
PATIENTS = 12
SEED = 11
SPAN_DAYS = 14.0
RUN_TIMEOUT_S = 900
FIGURES = REPO / "var" / "docker-e2e" / "figures.json"
SCREENSHOT = REPO / "var" / "screenshots" / "docker-airflow-ui.png"
ONE_SHOTS = {"airflow-init", "dipro-checkpoint-init"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Night:
    """The stack with its cohort: ground truth, REST, checks."""

    def __init__(self, stack: ComposeStack, reference: datetime) -> None:
        from dipro_fhir.synth import generate_cohort

        self.stack = stack
        self.reference = reference
        start = reference - timedelta(days=SPAN_DAYS)
        self.truth = [
            p.truth
            for p in generate_cohort(PATIENTS, seed=SEED, start=start, reference_time=reference)
        ]

    def active(self, as_of: datetime) -> set[str]:
        return {t.patient_id for t in self.truth if t.admitted <= as_of < t.discharged}

    def wait(self, rest: requests.Session, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        runs: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for run_id in run_ids:
                response = rest.get(self.run_url(run_id), timeout=30)
                response.raise_for_status()
                runs[run_id] = response.json()
            if all(run["state"] in ("success", "failed") for run in runs.values()):
                states = {run_id: run["state"] for run_id, run in runs.items()}
                assert set(states.values()) == {"success"}, f"{states}\n{self.stack.logs()}"
                return runs
            time.sleep(5)
        raise AssertionError(f"runs not finished in {RUN_TIMEOUT_S} s\n{self.stack.logs()}")

    def run_url(self, run_id: str = "") -> str:
        return f"{self.stack.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns" + (
            f"/{run_id}" if run_id else ""
        )

    def task_instances(self, rest: requests.Session, run_id: str) -> list[dict[str, Any]]:
        response = rest.get(
            f"{self.run_url(run_id)}/taskInstances", params={"limit": 500}, timeout=30
        )
        response.raise_for_status()
        return list(response.json()["task_instances"])

    def check_night(self, as_of: datetime) -> None:
        """Each patient in the ICU at ``as_of``: one RiskAssessment per task, under a
        Provenance, and score rows; nobody else."""
        from dipro_fhir.fhir.client import FhirClient

        expected = self.active(as_of)
        assert len(expected) >= 2, f"the cohort should have patients in the ICU at {as_of}"
        tasks: dict[str, Counter[str]] = defaultdict(Counter)
        ids: set[str] = set()
        with FhirClient(self.stack.fhir_url) as client:
            for resource in client.search("RiskAssessment", {"date": _iso(as_of), "_count": "200"}):
                patient = resource["subject"]["reference"].removeprefix("Patient/")
                tasks[patient][resource["code"]["coding"][0]["code"]] += 1
                ids.add(f"RiskAssessment/{resource['id']}")
            targets = {
                target["reference"]
                for provenance in client.search("Provenance", {"_count": "200"})
                for target in provenance["target"]
            }
        assert set(tasks) == expected, (as_of, sorted(tasks), sorted(expected))
        for patient, counts in tasks.items():
            assert {"mortality", "los"} <= set(counts), (as_of, patient, counts)
            assert set(counts.values()) == {1}, (as_of, patient, counts)
        assert ids <= targets, f"RiskAssessments without a Provenance: {sorted(ids - targets)}"
        assert self.score_rows(as_of) == expected

    def score_rows(self, as_of: datetime) -> set[str]:
        from dipro_fhir.store.models import ScoreRow

        engine = create_engine(self.stack.results_db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(ScoreRow.patient_id, func.count())
                    .where(ScoreRow.as_of == as_of)
                    .group_by(ScoreRow.patient_id)
                ).all()
        finally:
            engine.dispose()
        return {str(patient) for patient, _ in rows}


@pytest.fixture(scope="module")
def night() -> Iterator[Night]:
    stack = ComposeStack.with_free_ports(
        "dipro-e2e", profiles=("scoring",), DIPRO_CPU_WORKER_QUEUES="default"
    )
    stack.compose("build", timeout_s=3600, figure="build_s")
    started = time.monotonic()
    try:
        stack.compose("up", "-d", "--wait", "--wait-timeout", "900", timeout_s=960, figure="up_s")
        reference = datetime.now(UTC).replace(microsecond=0)
        stack.exec(
            "airflow-worker", "dipro-fhir", "--quiet", "synth", "load",
            "--patients", str(PATIENTS), "--seed", str(SEED),
            "--reference-time", reference.isoformat(), "--span-days", str(SPAN_DAYS),
            figure="load_s",
        )  # fmt: skip
        stack.figures["started_monotonic"] = started
        yield Night(stack, reference)
    finally:
        stack.figures.pop("started_monotonic", None)
        FIGURES.parent.mkdir(parents=True, exist_ok=True)
        FIGURES.write_text(json.dumps(stack.figures, indent=2) + "\n")
        print(f"docker e2e figures: {stack.figures}")
        stack.compose("down", "-v", "--remove-orphans", timeout_s=900, figure="down_s")
        assert stack.containers() == [], "down -v left containers"
        left = stack_resources(stack)
        assert left == "", f"down -v left volumes or networks:\n{left}"


def stack_resources(stack: ComposeStack) -> str:
    """Volumes and networks of the compose project that still exist."""
    import subprocess

    label = f"label=com.docker.compose.project={stack.project}"
    found = []
    for kind in ("volume", "network"):
        out = subprocess.run(
            ["docker", kind, "ls", "-q", "--filter", label],
            env=stack.environ(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        found += out.split()
    return "\n".join(found)


def test_every_service_is_healthy_and_the_one_shots_completed(night: Night) -> None:
    containers = night.stack.containers()
    services = {c["Service"] for c in containers}
    assert {"airflow-worker", "airflow-worker-scoring", "hapi", "orthanc", "postgres"} <= services
    for container in containers:
        if container["Service"] in ONE_SHOTS:
            assert (container["State"], container["ExitCode"]) == ("exited", 0), container
        else:
            assert (container["State"], container["Health"]) == ("running", "healthy"), container


def test_hapi_stores_the_cohort_in_postgresql(night: Night) -> None:
    """HAPI's JPA store is the compose PostgreSQL (database hapi), not an in-memory default."""
    port = night.stack.variables["POSTGRES_PORT"]
    engine = create_engine(f"postgresql+psycopg2://hapi:hapi@127.0.0.1:{port}/hapi")
    try:
        with engine.connect() as conn:
            patients = conn.execute(
                text("SELECT count(*) FROM hfj_resource WHERE res_type = 'Patient'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert patients == PATIENTS


def test_nights_score_every_patient_in_the_icu_with_scoring_on_its_own_worker(
    night: Night,
) -> None:
    from dipro_fhir.sandbox.core import nights_before

    rest = night.stack.rest()
    unpaused = rest.patch(
        f"{night.stack.airflow_url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=30
    )
    assert unpaused.status_code == 200, unpaused.text
    tonight = nights_before(night.reference, 1)[0]
    # A chosen as-of after tonight's run and before the load (not a point of the schedule).
    as_of = max(
        (night.reference - timedelta(minutes=30)).replace(second=0), tonight + timedelta(minutes=1)
    )
    created = rest.post(night.run_url(), json={"logical_date": _iso(as_of), "conf": {}}, timeout=30)
    assert created.status_code == 200, created.text
    deadline = time.monotonic() + 120
    scheduled: dict[datetime, str] = {}
    while tonight not in scheduled and time.monotonic() < deadline:
        listed = rest.get(night.run_url(), params={"run_type": "scheduled"}, timeout=30)
        listed.raise_for_status()
        scheduled = {_parse(r["logical_date"]): r["dag_run_id"] for r in listed.json()["dag_runs"]}
        time.sleep(2)
    assert tonight in scheduled, f"the scheduler started no run for {tonight}: {sorted(scheduled)}"

    run_ids = [scheduled[tonight], created.json()["dag_run_id"]]
    runs = night.wait(rest, run_ids)
    started = night.stack.figures["started_monotonic"]
    night.stack.figures["up_to_first_nights_done_s"] = round(time.monotonic() - started, 1)
    night.stack.figures["nights_s"] = round(
        max(_parse(r["end_date"]) for r in runs.values()).timestamp()
        - min(_parse(r["start_date"]) for r in runs.values()).timestamp(),
        1,
    )
    night.check_night(tonight)
    night.check_night(as_of)

    hosts = {
        s: night.stack.exec(s, "hostname").strip()
        for s in ("airflow-worker", "airflow-worker-scoring")
    }
    for run_id in run_ids:
        for ti in night.task_instances(rest, run_id):
            if ti["state"] != "success":
                continue
            worker = "airflow-worker-scoring" if ti["task_id"] == "score" else "airflow-worker"
            assert ti["hostname"] == hosts[worker], (ti["task_id"], ti["hostname"], hosts)


def test_backfill_of_three_nights_survives_one_worker_restart(night: Night) -> None:
    from dipro_fhir.sandbox.core import nights_before

    rest = night.stack.rest()
    nights = sorted(nights_before(night.reference, 4)[1:])
    body = {"dag_id": DAG_ID, "from_date": _iso(nights[0]), "to_date": _iso(nights[-1]),
            "max_active_runs": 1, "reprocess_behavior": "none"}  # fmt: skip
    created = rest.post(f"{night.stack.airflow_url}/api/v2/backfills", json=body, timeout=30)
    assert created.status_code == 200, created.text

    run_ids: list[str] = []
    restarted = False
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not restarted and time.monotonic() < deadline:
        listed = rest.get(night.run_url(), params={"run_type": "backfill", "limit": 50}, timeout=30)
        listed.raise_for_status()
        run_ids = [r["dag_run_id"] for r in listed.json()["dag_runs"]]
        running = [
            ti
            for run_id in run_ids
            for ti in night.task_instances(rest, run_id)
            if ti["state"] == "running" and ti["task_id"] != "score"
        ]
        if running:
            # Mid-night: the first worker runs a task of the backfill. Restarted exactly once.
            print(f"restarting airflow-worker while {running[0]['task_id']} runs")
            night.stack.compose(
                "restart", "airflow-worker", timeout_s=900, figure="worker_restart_s"
            )
            restarted = True
        time.sleep(1)
    assert restarted, "no task of the backfill ran on the first worker to restart it under"
    assert len(run_ids) == len(nights), run_ids

    runs = night.wait(rest, run_ids)
    assert sorted(_parse(r["logical_date"]) for r in runs.values()) == nights
    for run_id in run_ids:
        tries = {ti["task_id"]: ti["try_number"] for ti in night.task_instances(rest, run_id)}
        assert set(tries.values()) <= {0, 1}, (run_id, tries)
    for as_of in nights:
        night.check_night(as_of)


def test_the_airflow_ui_from_the_container_shows_a_run(night: Night) -> None:
    from tests.e2e.sandbox_browser import AirflowUI, chromium, require_browser

    require_browser()
    rest = night.stack.rest()
    listed = rest.get(night.run_url(), params={"state": "success", "limit": 1}, timeout=30)
    listed.raise_for_status()
    runs = listed.json()["dag_runs"]
    assert runs, "no successful run to show"
    with chromium() as browser:
        ui = AirflowUI(browser, night.stack.airflow_url)
        ui.login("admin", night.stack.admin_password())
        ui.open_run(DAG_ID, runs[0]["dag_run_id"])
        ui.screenshot(SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 10_000
