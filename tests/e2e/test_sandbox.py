"""The sandbox (``scripts/sandbox.sh``) end to end: real HAPI, Orthanc, PostgreSQL and Airflow 3.

A module fixture runs ``bash scripts/sandbox.sh up`` exactly as a user would, in a temporary
folder with free ports, a fresh results database and a tiny untrained checkpoint (the user
path trains the demo checkpoint, which takes minutes), and ``down --purge`` at the end, also
when a test failed. Against it:

* a run triggered through Airflow's REST API for a chosen as-of time scores every patient
  in the ICU then (RiskAssessments on HAPI with that ``occurrenceDateTime``, rows in
  PostgreSQL), and the run the scheduler started for tonight on its own succeeds too;
* a backfill of the three nights before (REST ``POST /api/v2/backfills``) gives three
  successful runs, each writing its own night's RiskAssessments;
* a run with ``extraction_mode`` ``bulk`` waits for its ``$export`` in Airflow's triggerer
  (a real one, not ``dag.test``'s inline loop) and scores every patient in the ICU;
* in chromium, the *Trigger Dag* form of ``dipro_nightly`` shows the DAG's params; a run
  triggered there with two ``patient_ids`` scores exactly those two;
* last, ``up --env KEY=VALUE`` on the running sandbox restarts the Airflow processes with the
  setting, ``env`` prints it, and the printed ``eval "$(sandbox.sh env)"; dipro-fhir check``
  (in a shell without the venv on its PATH) sees it; ``up --env KEY=`` drops it again.

Screenshots go to ``var/screenshots/`` (and the test's tmp folder).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select

from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.sandbox_browser import AirflowUI, chromium, require_browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SANDBOX_SH = REPO / "scripts" / "sandbox.sh"
SCREENSHOTS = REPO / "var" / "screenshots"
DAG_ID = "dipro_nightly"
DAG_PARAMS = ("patient_ids", "group_id", "as_of", "cohort", "model_version", "dry_run")
SERVICES = (
    "hapi",
    "orthanc",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
RUN_TIMEOUT_S = 300
UP_TIMEOUT_S = 480


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class RunningSandbox:
    """What ``up`` left behind: its folder, state, ground truth and a REST session."""

    root: Path
    state: dict[str, Any]
    truth: list[Any]
    up_output: str

    @property
    def airflow_url(self) -> str:
        return str(self.state["urls"]["airflow"])

    @property
    def fhir_url(self) -> str:
        return str(self.state["urls"]["fhir"])

    @property
    def password(self) -> str:
        return str(json.loads(Path(self.state["paths"]["password_file"]).read_text())["admin"])

    @property
    def nights(self) -> list[datetime]:
        """Tonight's as-of time and the three nights before, newest first."""
        return [_parse(n) for n in self.state["cohort"]["nights"]]

    @property
    def reference_time(self) -> datetime:
        return _parse(self.state["cohort"]["reference_time"])

    def pids(self) -> dict[str, int]:
        found = {}
        for service in SERVICES:
            pid_file = self.root / "run" / f"{service}.pid"
            if pid_file.exists():
                found[service] = int(pid_file.read_text().split()[0])
        return found

    def log_tails(self, chars: int = 2500) -> str:
        logs = sorted((self.root / "logs").glob("*.log"))
        task_logs = sorted((self.root / "airflow" / "logs").glob("dag_id=*/**/*.log"))
        return "\n".join(
            f"--- {path.relative_to(self.root)}\n"
            + path.read_bytes()[-chars:].decode("utf-8", errors="replace")
            for path in [*logs, *task_logs[-6:]]
        )

    def rest(self) -> requests.Session:
        token = requests.post(
            f"{self.airflow_url}/auth/token",
            json={"username": "admin", "password": self.password},
            timeout=10,
        )
        assert token.status_code == 201, token.text
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return session

    def active(self, as_of: datetime) -> set[str]:
        return {t.patient_id for t in self.truth if t.admitted <= as_of < t.discharged}


def _sandbox(root: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SANDBOX_SH), "--dir", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _pgid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[2])


def _listening_sockets() -> dict[int, str]:
    """Socket inode -> ``address:port`` of every listening TCP socket (/proc/net/tcp{,6})."""
    found = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1]
                           for i in range(0, len(hex_address), 8))  # fmt: skip
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found[int(fields[9])] = f"{address}:{int(hex_port, 16)}"
    return found


def _listeners_of_groups(pgids: set[int]) -> dict[int, set[str]]:
    """pid -> the addresses it listens on, for processes in the given process groups."""
    sockets = _listening_sockets()
    result: dict[int, set[str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or _pgid(int(proc.name)) not in pgids:
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        inodes = {int(link[8:-1]) for link in links if link.startswith("socket:[")}
        addresses = {sockets[i] for i in inodes if i in sockets}
        if addresses:
            result[int(proc.name)] = addresses
    return result


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    """``sandbox.sh up`` in a tmp folder (free ports, own results DB); ``down --purge`` after."""
    from dipro_fhir.synth import read_truth

    work = tmp_path_factory.mktemp("sandbox")
    root = work / "sandbox"
    checkpoint = write_tiny_checkpoint(
        work / "checkpoint", name="dipro-sandbox-test", version="0.0.1"
    )
    results_db = f"dipro_sandbox_test_{uuid.uuid4().hex[:10]}"
    started = time.monotonic()
    up = subprocess.CompletedProcess[str](args=[], returncode=-1, stdout="", stderr="")
    try:
        up = _sandbox(
            root,
            "up",
            f"--hapi-port={_free_port()}",
            f"--orthanc-port={_free_port()}",
            f"--airflow-port={_free_port()}",
            f"--results-db={results_db}",
            f"--checkpoint={checkpoint}",
            "--patients=8",
            timeout_s=UP_TIMEOUT_S,
        )
        print(f"\n--- sandbox.sh up ({time.monotonic() - started:.0f} s)\n{up.stdout}{up.stderr}")
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted((root / "logs").glob("*.log"))
        )
        assert up.returncode == 0, f"sandbox.sh up failed:\n{up.stdout}\n{up.stderr}\n{logs}"
        state = json.loads((root / "sandbox.json").read_text())
        truth = list(read_truth(state["paths"]["truth"]))
        yield RunningSandbox(root, state, truth, up.stdout + up.stderr)
    finally:
        pids = {}
        for service in SERVICES:
            pid_file = root / "run" / f"{service}.pid"
            if pid_file.exists():
                pids[service] = int(pid_file.read_text().split()[0])
        down = _sandbox(root, "down", "--purge", timeout_s=180)
        print(f"--- sandbox.sh down --purge\n{down.stdout}{down.stderr}")
        assert down.returncode == 0, f"sandbox.sh down failed:\n{down.stdout}\n{down.stderr}"
        left = {service: pid for service, pid in pids.items() if _alive(pid)}
        assert not left, f"still running after down: {left}"
        assert not root.exists(), "down --purge left the sandbox folder"


def _wait_for_runs(
    sandbox: RunningSandbox, rest: requests.Session, run_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Poll until every run is finished; return them by id."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        for run_id in run_ids:
            response = rest.get(
                f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", timeout=10
            )
            response.raise_for_status()
            runs[run_id] = response.json()
        if all(run["state"] in ("success", "failed") for run in runs.values()):
            return runs
        time.sleep(2)
    states = {run_id: run["state"] for run_id, run in runs.items()}
    raise AssertionError(f"runs not finished in {RUN_TIMEOUT_S} s: {states}\n{sandbox.log_tails()}")


def _assert_succeeded(sandbox: RunningSandbox, runs: dict[str, dict[str, Any]]) -> None:
    states = {run_id: run["state"] for run_id, run in runs.items()}
    assert set(states.values()) == {"success"}, f"{states}\n{sandbox.log_tails()}"


def _assessments(sandbox: RunningSandbox) -> dict[str, dict[str, set[str]]]:
    """RiskAssessments on HAPI: ``occurrenceDateTime`` -> patient id -> task codes."""
    from dipro_fhir.fhir.client import FhirClient

    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    with FhirClient(sandbox.fhir_url) as client:
        for resource in client.search("RiskAssessment", {"_count": "500"}):
            patient = resource["subject"]["reference"].removeprefix("Patient/")
            task = resource["code"]["coding"][0]["code"]
            found[resource["occurrenceDateTime"]][patient].add(task)
    return found


def _score_rows(sandbox: RunningSandbox, as_of: datetime) -> set[str]:
    """Patients with score rows for ``as_of`` in the sandbox's PostgreSQL results database."""
    from dipro_fhir.store.models import ScoreRow

    engine = create_engine(sandbox.state["urls"]["results_db"])
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


def _check_night(
    sandbox: RunningSandbox, found: dict[str, dict[str, set[str]]], as_of: datetime
) -> None:
    """Each patient in the ICU at ``as_of`` has its RiskAssessments for ``as_of``; no one else."""
    expected = sandbox.active(as_of)
    assert len(expected) >= 2, f"the cohort should have patients in the ICU at {as_of}"
    scored = found.get(_iso(as_of), {})
    assert set(scored) == expected, (as_of, sorted(scored), sorted(expected))
    for patient, tasks in scored.items():
        assert {"mortality", "los"} <= tasks, (as_of, patient, sorted(tasks))
    assert _score_rows(sandbox, as_of) == expected


def test_up_is_idempotent_and_status_reports_every_service(sandbox: RunningSandbox) -> None:
    output = sandbox.up_output
    for step in ("hapi", "orthanc", "postgresql", "results database", "checkpoint",
                 "synthetic cohort", "airflow api-server", "airflow scheduler"):  # fmt: skip
        assert f"] {step}" in output, f"no timing line for {step}:\n{output}"
    assert f"login admin / {sandbox.password}" in output
    assert sandbox.airflow_url in output
    assert not any(t.patient_id in output for t in sandbox.truth), "up printed a patient id"

    pids = sandbox.pids()
    assert set(pids) == set(SERVICES)
    again = _sandbox(sandbox.root, "up", timeout_s=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") >= 3, again.stdout
    assert "already loaded" in again.stdout, again.stdout
    assert sandbox.pids() == pids, "a second up restarted services"

    # Loopback only; Orthanc 1.10 has no bind address (it refuses non-loopback clients).
    orthanc_port = sandbox.state["config"]["orthanc_port"]
    listeners = _listeners_of_groups(set(pids.values()))
    assert listeners, "found no listening sockets of the sandbox's processes"
    orthanc_group = pids["orthanc"]
    for pid, addresses in listeners.items():
        allowed = {f"0.0.0.0:{orthanc_port}"} if _pgid(pid) == orthanc_group else set()
        for address in addresses - allowed:
            host = address.rsplit(":", 1)[0]
            assert ipaddress.ip_address(host).is_loopback, (pid, address)

    status = _sandbox(sandbox.root, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    for service, pid in pids.items():
        assert f"running (pid {pid})" in next(
            line for line in status.stdout.splitlines() if service in line
        ), status.stdout
    assert not any(t.patient_id in again.stdout + status.stdout for t in sandbox.truth)


def test_backfill_of_three_nights_writes_each_nights_assessments(sandbox: RunningSandbox) -> None:
    rest = sandbox.rest()
    nights = sorted(sandbox.nights[1:])  # the three nights before tonight, oldest first
    body = {
        "dag_id": DAG_ID,
        "from_date": _iso(nights[0]),
        "to_date": _iso(nights[-1]),
        "max_active_runs": 3,
        "reprocess_behavior": "none",
    }
    dry = rest.post(f"{sandbox.airflow_url}/api/v2/backfills/dry_run", json=body, timeout=30)
    assert dry.status_code == 200, dry.text
    planned = sorted(_parse(b["logical_date"]) for b in dry.json()["backfills"])
    assert planned == nights

    created = rest.post(f"{sandbox.airflow_url}/api/v2/backfills", json=body, timeout=30)
    assert created.status_code == 200, created.text
    backfill_id = created.json()["id"]
    deadline = time.monotonic() + 30
    run_ids: list[str] = []
    while len(run_ids) < len(nights) and time.monotonic() < deadline:
        listed = rest.get(
            f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns",
            params={"run_type": "backfill", "limit": 50},
            timeout=10,
        )
        listed.raise_for_status()
        run_ids = [r["dag_run_id"] for r in listed.json()["dag_runs"]]
        time.sleep(1)
    assert len(run_ids) == len(nights), f"backfill {backfill_id} made runs {run_ids}"

    runs = _wait_for_runs(sandbox, rest, run_ids)
    _assert_succeeded(sandbox, runs)
    assert sorted(_parse(r["logical_date"]) for r in runs.values()) == nights
    found = _assessments(sandbox)
    for night in nights:
        _check_night(sandbox, found, night)


def test_rest_triggered_run_scores_every_patient_in_the_icu(sandbox: RunningSandbox) -> None:
    rest = sandbox.rest()
    # A chosen as-of between tonight's run and the load time (not a point of the schedule).
    as_of = (sandbox.reference_time - timedelta(minutes=30)).replace(second=0)
    as_of = max(as_of, sandbox.nights[0] + timedelta(minutes=1))
    created = rest.post(
        f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": _iso(as_of), "conf": {}},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]

    # The DAG is unpaused with its 02:00 UTC schedule: the scheduler ran tonight on its own.
    listed = rest.get(
        f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns",
        params={"run_type": "scheduled"},
        timeout=10,
    )
    listed.raise_for_status()
    scheduled = {_parse(r["logical_date"]): r["dag_run_id"] for r in listed.json()["dag_runs"]}
    assert sandbox.nights[0] in scheduled, sorted(scheduled)

    runs = _wait_for_runs(sandbox, rest, [run_id, scheduled[sandbox.nights[0]]])
    _assert_succeeded(sandbox, runs)
    found = _assessments(sandbox)
    _check_night(sandbox, found, as_of)
    _check_night(sandbox, found, sandbox.nights[0])


def test_bulk_mode_run_waits_in_the_triggerer_and_scores_every_patient(
    sandbox: RunningSandbox,
) -> None:
    rest = sandbox.rest()
    as_of = (sandbox.reference_time - timedelta(minutes=75)).replace(second=0)
    as_of = max(as_of, sandbox.nights[0] + timedelta(minutes=2))
    created = rest.post(
        f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": _iso(as_of), "conf": {"extraction_mode": "bulk"}},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]

    _assert_succeeded(sandbox, _wait_for_runs(sandbox, rest, [run_id]))
    _check_night(sandbox, _assessments(sandbox), as_of)
    task = rest.get(
        f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/bulk_export",
        timeout=10,
    )
    task.raise_for_status()
    assert task.json()["state"] == "success"
    # Only the triggerer logs a fired trigger event; no other run of the sandbox defers.
    logs = [*(sandbox.root / "logs").glob("*.log"), *(sandbox.root / "airflow").glob("**/*.log")]
    fired = [p for p in logs if b"Trigger fired event" in p.read_bytes()]
    assert fired, sandbox.log_tails()


def test_trigger_form_in_chromium_scores_exactly_two_patients(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    require_browser()
    now = datetime.now(UTC)
    candidates = sorted(sandbox.active(now - timedelta(minutes=5)) & sandbox.active(now))
    assert len(candidates) >= 2, "two patients should still be in the ICU now"
    chosen = candidates[:2]
    rest = sandbox.rest()
    with chromium() as browser:
        ui = AirflowUI(browser, sandbox.airflow_url)
        ui.login("admin", sandbox.password)
        dialog = ui.open_trigger_form(DAG_ID)
        labels = ui.param_labels(dialog)
        assert set(DAG_PARAMS) <= set(labels), labels
        for name in DAG_PARAMS:
            assert ui.param_field(dialog, name).count() >= 1 or name == "as_of", name
        ui.fill_string_array(dialog, "patient_ids", chosen)
        assert ui.param_field(dialog, "patient_ids").input_value() == "\n".join(chosen)
        ui.screenshot(
            SCREENSHOTS / "sandbox-trigger-form.png",
            tmp_path / "sandbox-trigger-form.png",
            locator=dialog,
        )
        sent = ui.submit_trigger(dialog)
        assert sent["request"]["conf"]["patient_ids"] == chosen, sent["request"]
        run = sent["response"]
        assert run["triggered_by"] == "ui"

        runs = _wait_for_runs(sandbox, rest, [run["dag_run_id"]])
        _assert_succeeded(sandbox, runs)
        ui.open_run(DAG_ID, run["dag_run_id"])
        ui.screenshot(SCREENSHOTS / "sandbox-run-grid.png", tmp_path / "sandbox-run-grid.png")

    as_of = _parse(run["logical_date"] or run["run_after"])
    found = _assessments(sandbox)
    scored = found.get(_iso(as_of), {})
    assert set(scored) == set(chosen), (_iso(as_of), sorted(scored))
    assert _score_rows(sandbox, as_of.replace(microsecond=0)) == set(chosen)


def _latest_scored_night(sandbox: RunningSandbox) -> tuple[Any, list[Any]]:
    """The newest finished run with scores, and its scores (results database)."""
    from dipro_fhir.store.models import Run, ScoreRow

    engine = create_engine(sandbox.state["urls"]["results_db"])
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                select(Run).where(Run.status.in_(("success", "partial"))).order_by(Run.as_of.desc())
            ).all()
            for run in runs:
                scores = conn.execute(
                    select(ScoreRow).where(
                        ScoreRow.as_of == run.as_of, ScoreRow.model_version == run.model_version
                    )
                ).all()
                if scores:
                    return run, list(scores)
    finally:
        engine.dispose()
    raise AssertionError(f"no finished run with scores\n{sandbox.log_tails()}")


def test_dipro_page_in_chromium_shows_the_nights_a_night_and_a_patient(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    require_browser()
    assert f"DiPro page     {sandbox.airflow_url}/dipro/" in sandbox.up_output
    rest = sandbox.rest()
    # Tonight's run, which the scheduler starts on its own, has finished (alone, this test
    # waits for it; after the tests above the page lists their runs too).
    deadline, listed = time.monotonic() + 120, []
    while not listed and time.monotonic() < deadline:
        listed = rest.get(
            f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns",
            params={"run_type": "scheduled"},
            timeout=10,
        ).json()["dag_runs"]
        time.sleep(0 if listed else 2)
    assert listed, f"the scheduler started no run\n{sandbox.log_tails()}"
    _wait_for_runs(sandbox, rest, [r["dag_run_id"] for r in listed])
    night, scores = _latest_scored_night(sandbox)
    patient = sorted({s.patient_id for s in scores})[0]
    death = next(s for s in scores if s.patient_id == patient and s.task == "mortality")
    as_of = night.as_of.astimezone(UTC)
    shown = as_of.strftime("%Y-%m-%d %H:%M:%S" if as_of.second else "%Y-%m-%d %H:%M") + " UTC"
    shots = {n: (SCREENSHOTS / f"dipro-{n}.png", tmp_path / f"dipro-{n}.png")
             for n in ("nights", "night", "patient")}  # fmt: skip
    with chromium() as browser:
        ui = AirflowUI(browser, sandbox.airflow_url)
        ui.login("admin", sandbox.password)
        frame = ui.open_nav_entry("DiPro")
        link = frame.get_by_role("link", name=shown, exact=True)
        link.first.wait_for()
        row = frame.locator("tr", has=link.first)
        cells = [" ".join(c.split()) for c in row.locator("td").all_inner_texts()]
        assert cells[1:7] == [
            night.kind,
            night.mode,
            night.status,
            str(night.counts["patients"]),
            str(night.counts["scored"]),
            str(night.counts["failed_patients"]),
        ]
        assert patient not in frame.locator("body").inner_text(), "the night list names a patient"
        ui.screenshot(*shots["nights"])

        if night.dag_run_id:  # the run's own page in Airflow has a tab that shows this night
            tab = ui.open_run_tab(DAG_ID, night.dag_run_id, "DiPro night")
            tab.get_by_role("heading", name=f"Night of {shown}").wait_for()

        page = ui.open_alone(f"/dipro/runs/{night.id}")
        mortality = len({s.patient_id for s in scores if s.task == "mortality"})
        assert f"in-hospital mortality risk ({mortality} patients)" in page
        assert f"{night.model_name} <b>{night.model_version}</b>" in page
        assert "Validated: passes the validation gate" in page
        assert patient not in page, "the night page names a patient"
        ui.screenshot(*shots["night"], full_page=True)

        page = ui.open_alone(f"/dipro/patients/{patient}")
        assert f"<b>{death.probability:.1%}</b> death in hospital" in page
        assert shown in page
        ui.screenshot(*shots["patient"], full_page=True)


def _check_in_the_printed_env(sandbox: RunningSandbox) -> subprocess.CompletedProcess[str]:
    """What ``up`` tells a user to run: ``eval "$(sandbox.sh env)"; dipro-fhir check``, in a
    shell whose PATH has no venv on it."""
    command = f'eval "$(bash {SANDBOX_SH} --dir {sandbox.root} env)"; dipro-fhir check'
    environ = {**os.environ, "PATH": "/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", command], env=environ, capture_output=True, text=True,
                          timeout=180, check=False)  # fmt: skip


def _task_log_errors(sandbox: RunningSandbox, run_id: str, task_id: str) -> list[str]:
    """The error messages of a task's log files (Airflow 3 writes JSON lines), in order."""
    runs = sandbox.root / "airflow" / "logs" / f"dag_id={DAG_ID}"
    files = sorted((runs / f"run_id={run_id}" / f"task_id={task_id}").glob("*.log"))
    assert files, sorted(p.name for p in runs.iterdir())
    errors = []
    for line in files[-1].read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "error":
            errors.append(str(record.get("event", "")))
    return errors


def test_up_env_applies_a_setting_to_the_running_airflow_and_check_sees_it(
    sandbox: RunningSandbox,
) -> None:
    """Last in this module: it restarts the Airflow processes twice."""
    setting = "DIPRO_MODEL__MIN_MORTALITY_AUROC"  # a site minimum no checkpoint here meets
    assert _check_in_the_printed_env(sandbox).returncode == 0
    before = sandbox.pids()

    up = _sandbox(sandbox.root, "up", f"--env={setting}=0.999", timeout_s=300)
    assert up.returncode == 0, up.stdout + up.stderr
    after = sandbox.pids()
    for service in [s for s in SERVICES if s.startswith("airflow-")]:
        assert f"{service}: restarting to apply its settings (changed: {setting}" in up.stdout
        assert after[service] != before[service], service
    assert (after["hapi"], after["orthanc"]) == (before["hapi"], before["orthanc"])
    assert f"export {setting}=0.999" in _sandbox(sandbox.root, "env").stdout
    refused = _check_in_the_printed_env(sandbox)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert setting in refused.stdout, refused.stdout  # the gate names the site's minimum

    # The restarted scheduler runs tasks with the setting: the plan refuses the checkpoint,
    # and the task log's last error line says so (after Airflow's traceback).
    rest = sandbox.rest()
    as_of = (sandbox.reference_time - timedelta(minutes=100)).replace(second=0)
    as_of = max(as_of, sandbox.nights[0] + timedelta(minutes=3))
    created = rest.post(
        f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"logical_date": _iso(as_of), "conf": {}},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    assert _wait_for_runs(sandbox, rest, [run_id])[run_id]["state"] == "failed"
    errors = _task_log_errors(sandbox, run_id, "plan")
    assert "Task failed with exception" in errors[:-1], errors
    assert errors[-1].startswith("plan failed: checkpoint "), errors[-1]
    assert f"({setting})" in errors[-1], errors[-1]

    dropped = _sandbox(sandbox.root, "up", f"--env={setting}=", timeout_s=300)
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    assert f"airflow-scheduler: restarting to apply its settings (changed: {setting}" in (
        dropped.stdout
    )
    assert setting not in _sandbox(sandbox.root, "env").stdout
    assert _check_in_the_printed_env(sandbox).returncode == 0
    status = _sandbox(sandbox.root, "status")
    assert status.returncode == 0, status.stdout
