"""A local sandbox of the whole stack without Docker: ``bash scripts/sandbox.sh up|down|status``.

``up`` starts, each as a detached process (own session and process group, pid file, log file)
on loopback:

* HAPI FHIR 8.8 (the project's test server jar, ``tests/servers/hapi``) with an H2 *file*
  database in the sandbox folder, so the FHIR data survives ``down``/``up``;
* Orthanc with the DICOMweb plugin, its own config, storage and index in the sandbox folder;
* Airflow 3 ``api-server``, ``scheduler --skip-serve-logs``, ``dag-processor`` and
  ``triggerer`` (LocalExecutor, metadata database ``<results db>_airflow`` on PostgreSQL,
  ``AIRFLOW_HOME`` in the sandbox folder, the repo's ``dags/``,
  DAGs unpaused);

makes sure PostgreSQL answers on 127.0.0.1:5432 (the machine's cluster; it is shared and never
stopped here), creates and migrates the results database, loads a small synthetic cohort into
HAPI and Orthanc, puts the demo checkpoint in place (trained once with the demo's own trainer
and cached), creates the Airflow connections ``dipro_fhir``, ``dipro_dicomweb``,
``dipro_results_db`` and the pool ``dipro_gpu`` through the REST API, and prints the UI address
and login. Every step is idempotent: a second ``up`` starts only what is not running.

The sandbox folder (``var/sandbox`` by default) holds ``sandbox.json`` (the configuration and
the addresses; tests read it), ``run/*.pid``, ``logs/*.log``, ``hapi/``, ``orthanc/``,
``airflow/``, ``checkpoint/``, ``cohort/truth.jsonl`` (the synthetic ground truth) and
``staging/``. Nothing printed names a patient.

This module only orchestrates processes: it imports ``dipro_fhir`` lazily, inside the steps
that load data, migrate the results database or train the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's bin, not /usr/bin
DAGS_FOLDER = REPO / "dags"
DEMO_CHECKPOINT = REPO / "var" / "demo" / "checkpoint"
ORTHANC_BIN = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
STATE_FILE = "sandbox.json"
DAG_ID = "dipro_nightly"
POOL = "dipro_gpu"
COHORT_PREFIX = "sbx"
ADMIN = "admin"
# The DAG's default schedule is 02:00 UTC: "tonight" is the latest 02:00 UTC before now.
NIGHTLY_HOUR_UTC = 2
BACKFILL_NIGHTS = 3
AIRFLOW_SERVICES = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",  # waits for Bulk Data exports (extraction_mode=bulk) without a slot
)
SERVICES = ("hapi", "orthanc", *AIRFLOW_SERVICES)
AIRFLOW_ARGS = {
    "airflow-api-server": ["api-server"],
    "airflow-scheduler": ["scheduler", "--skip-serve-logs"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer", "--skip-serve-logs"],
}
HAPI_READY_S = 240.0
STOP_GRACE_S = 30.0

T = TypeVar("T")


class SandboxError(RuntimeError):
    """A step failed; the message says which and where its log is."""


# --- configuration and state ------------------------------------------------------------------


@dataclass
class Config:
    """What ``up`` was asked for; saved in ``sandbox.json`` and reused by later commands."""

    hapi_port: int = 8080
    orthanc_port: int = 8042
    airflow_port: int = 8081
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    results_db: str = "dipro_sandbox"
    patients: int = 12
    seed: int = 11
    image_size: int = 192
    parallelism: int = 4
    chunk_size: int | None = None  # None: the project's default (DIPRO_RUN__CHUNK_SIZE)
    task_retries: int = 1
    retry_delay_s: int = 10
    checkpoint_source: str | None = None
    train_patients: int = 160
    epochs: int = 20
    hapi_java_opts: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Sandbox:
    """The sandbox folder and its configuration."""

    root: Path
    config: Config

    # paths
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def state_file(self) -> Path:
        return self.path(STATE_FILE)

    def pid_file(self, service: str) -> Path:
        return self.path("run", f"{service}.pid")

    def log_file(self, service: str) -> Path:
        return self.path("logs", f"{service}.log")

    @property
    def airflow_home(self) -> Path:
        return self.path("airflow")

    @property
    def password_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json"

    @property
    def checkpoint(self) -> Path:
        return self.path("checkpoint")

    @property
    def truth_file(self) -> Path:
        return self.path("cohort", "truth.jsonl")

    # addresses
    @property
    def fhir_url(self) -> str:
        return f"http://127.0.0.1:{self.config.hapi_port}/fhir"

    @property
    def orthanc_url(self) -> str:
        return f"http://127.0.0.1:{self.config.orthanc_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.orthanc_url}/dicom-web"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.config.airflow_port}"

    def results_db_url(self, database: str | None = None) -> str:
        c = self.config
        return (
            f"postgresql+psycopg2://{c.pg_user}@{c.pg_host}:{c.pg_port}/{database or c.results_db}"
        )

    @property
    def airflow_db(self) -> str:
        """Airflow's metadata database: PostgreSQL, because Airflow refuses backfills on
        SQLite under concurrent access (the scheduler, DAG processor and API server)."""
        return f"{self.config.results_db}_airflow"

    def admin_password(self) -> str:
        return str(json.loads(self.password_file.read_text())[ADMIN])

    def read_state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {}
        state: dict[str, Any] = json.loads(self.state_file.read_text())
        return state

    def write_state(self, **updates: Any) -> None:
        state = self.read_state()
        state.update(updates)
        state["config"] = asdict(self.config)
        state["urls"] = {
            "fhir": self.fhir_url,
            "dicomweb": self.dicomweb_url,
            "orthanc": self.orthanc_url,
            "airflow": self.airflow_url,
            "results_db": self.results_db_url(),
        }
        state["paths"] = {
            "password_file": str(self.password_file),
            "checkpoint": str(self.checkpoint),
            "truth": str(self.truth_file),
            "logs": str(self.path("logs")),
            "airflow_home": str(self.airflow_home),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)


def load_sandbox(root: Path, overrides: dict[str, Any] | None = None) -> Sandbox:
    """The sandbox at ``root``: its saved configuration, updated with ``overrides``."""
    root = root.resolve()
    saved = {}
    state_file = root / STATE_FILE
    if state_file.exists():
        saved = json.loads(state_file.read_text()).get("config", {})
    known = set(Config.__dataclass_fields__)
    values = {k: v for k, v in saved.items() if k in known}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Sandbox(root, Config(**values))


# --- output --------------------------------------------------------------------------------


class Clock:
    """Prints each step with the seconds it took; remembers them for the summary."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[Callable[[str], None]]:
        t0 = time.monotonic()
        notes: list[str] = []
        yield notes.append
        took = time.monotonic() - t0
        self.steps.append((name, took))
        say(f"[{took:6.1f} s] {name}" + (f": {'; '.join(notes)}" if notes else ""))

    @property
    def total(self) -> float:
        return time.monotonic() - self.started


def say(message: str) -> None:
    print(f"sandbox: {message}", flush=True)


# --- processes -----------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    fields = _proc_stat(pid)
    return None if fields is None else fields[19]  # field 22 of stat: starttime


def _alive(pid: int, start_time: str | None = None) -> bool:
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_time is None or fields[19] == start_time


def _group_members(pgid: int) -> list[int]:
    """Live processes of one process group (zombies do not count)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def read_pid(sandbox: Sandbox, service: str) -> int | None:
    """The service's pid when its pid file names a live process (same start time)."""
    pid_file = sandbox.pid_file(service)
    try:
        pid_text, start_time = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _alive(pid, start_time) else None


def spawn(
    sandbox: Sandbox, service: str, argv: Sequence[str], env: dict[str, str], cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached (new session = own process group) with its log and pid file."""
    sandbox.log_file(service).parent.mkdir(parents=True, exist_ok=True)
    sandbox.pid_file(service).parent.mkdir(parents=True, exist_ok=True)
    with sandbox.log_file(service).open("ab") as log:
        log.write(f"\n=== {datetime.now(UTC).isoformat()} start {service}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    sandbox.pid_file(service).write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process


def stop_groups(groups: dict[str, int], grace_s: float = STOP_GRACE_S) -> dict[str, str]:
    """SIGTERM every process group, wait, SIGKILL what is left. Returns how each one ended."""
    outcome: dict[str, str] = {}
    for name, pgid in groups.items():
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            outcome[name] = "gone"
    deadline = time.monotonic() + grace_s
    pending = {n: g for n, g in groups.items() if n not in outcome}
    while pending and time.monotonic() < deadline:
        for name, pgid in list(pending.items()):
            if not _group_members(pgid):
                outcome[name] = "stopped"
                del pending[name]
        time.sleep(0.2)
    for name, pgid in pending.items():
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        outcome[name] = "killed (SIGKILL)"
    return outcome


def log_tail(sandbox: Sandbox, service: str, chars: int = 3000) -> str:
    path = sandbox.log_file(service)
    if not path.exists():
        return f"(no log at {path})"
    return path.read_bytes()[-chars:].decode("utf-8", errors="replace")


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    sandbox: Sandbox,
    services: Sequence[str] = (),
    interval_s: float = 0.5,
) -> T:
    """Poll ``probe`` until it returns a value; fail early when a watched service died."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = probe()
        except requests.RequestException:
            result = None
        if result is not None:
            return result
        for service in services:
            if read_pid(sandbox, service) is None:
                raise SandboxError(
                    f"{service} exited while waiting for {what}; "
                    f"log {sandbox.log_file(service)}:\n{log_tail(sandbox, service)}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {s}\n{log_tail(sandbox, s, 1500)}" for s in services)
            raise SandboxError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tails}")
        time.sleep(interval_s)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_port(port: int, service: str, flag: str, host: str = "127.0.0.1") -> None:
    if not port_free(port, host):
        raise SandboxError(f"port {port} for {service} is in use: pass {flag} PORT")


# --- time ----------------------------------------------------------------------------------


def nights_before(moment: datetime, count: int = BACKFILL_NIGHTS + 1) -> list[datetime]:
    """The last ``count`` nightly as-of times (02:00 UTC) at or before ``moment``, newest first."""
    tonight = moment.astimezone(UTC).replace(hour=NIGHTLY_HOUR_UTC, minute=0, second=0,
                                             microsecond=0)  # fmt: skip
    if tonight > moment:
        tonight -= timedelta(days=1)
    return [tonight - timedelta(days=k) for k in range(count)]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_answers(sandbox: Sandbox) -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(sandbox.results_db_url("postgres"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _pg_admin(sandbox: Sandbox, statement: str, **params: Any) -> list[Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(
        sandbox.results_db_url("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def ensure_postgres(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """PostgreSQL answers (started with pg_ctlcluster if it is the local cluster and down)."""
    if _pg_answers(sandbox):
        note(f"answers on {sandbox.config.pg_host}:{sandbox.config.pg_port}")
        return
    etc = Path("/etc/postgresql")
    if sandbox.config.pg_host != "127.0.0.1" or not etc.is_dir():
        raise SandboxError(
            f"PostgreSQL does not answer on {sandbox.config.pg_host}:{sandbox.config.pg_port} "
            "as user postgres without a password: run bash scripts/install.sh"
        )
    version = sorted(etc.iterdir(), key=lambda p: [int(x) for x in p.name.split(".")])[-1].name
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
    if os.geteuid() != 0 and shutil.which("sudo"):
        command.insert(0, "sudo")
    subprocess.run(command, check=False, capture_output=True, timeout=60)
    for _ in range(75):
        if _pg_answers(sandbox):
            note(f"started cluster {version}/main")
            return
        time.sleep(0.2)
    raise SandboxError("PostgreSQL could not be started: run bash scripts/install.sh")


def ensure_results_db(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """Create the results database and Airflow's metadata database if missing; bring the
    results database to ``alembic upgrade head`` (``airflow db migrate`` does Airflow's)."""
    name = sandbox.config.results_db
    if not name.replace("_", "").isalnum():
        raise SandboxError(f"results database name must be alphanumeric/underscore: {name!r}")
    for database in (name, sandbox.airflow_db):
        exists = _pg_admin(sandbox, "SELECT 1 FROM pg_database WHERE datname = :n", n=database)
        if not exists:
            _pg_admin(sandbox, f'CREATE DATABASE "{database}"')
            note(f"created database {database}")
    from dipro_fhir.store import upgrade_database

    upgrade_database(sandbox.results_db_url())
    note(f"{name} at alembic head")


def drop_results_db(sandbox: Sandbox) -> bool:
    if not _pg_answers(sandbox):
        return False
    for database in (sandbox.config.results_db, sandbox.airflow_db):
        _pg_admin(sandbox, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return True


# --- HAPI FHIR -----------------------------------------------------------------------------


def _fhir_metadata_ok(sandbox: Sandbox) -> bool | None:
    response = requests.get(
        f"{sandbox.fhir_url}/metadata", headers={"Accept": "application/fhir+json"}, timeout=10
    )
    return True if response.status_code == 200 else None


def start_hapi(sandbox: Sandbox, note: Callable[[str], None]) -> bool:
    """Start HAPI (H2 file database under ``hapi/``) unless it runs; True when started now."""
    if read_pid(sandbox, "hapi") is not None:
        note(f"already running on {sandbox.fhir_url}")
        return False
    require_port(sandbox.config.hapi_port, "HAPI FHIR", "--hapi-port")
    from tests.servers import hapi_server

    jar = hapi_server.ensure_jar()  # builds it with scripts/build_hapi.sh when out of date
    data = sandbox.path("hapi")
    data.mkdir(parents=True, exist_ok=True)
    java = os.environ.get("JAVA", "java")
    if shutil.which(java) is None:
        raise SandboxError(f"{java} not found: install Java 17 (bash scripts/install.sh)")
    argv = [
        java,
        *(sandbox.config.hapi_java_opts.split() or hapi_server.DEFAULT_JAVA_OPTS),
        "-jar",
        str(jar),
        f"--server.port={sandbox.config.hapi_port}",
        f"--dipro.hapi.batch2-maintenance-interval-ms={hapi_server.BATCH2_MAINTENANCE_INTERVAL_MS}",
        # An H2 file database in the sandbox folder: persistent across down/up, no server.
        f"--spring.datasource.url=jdbc:h2:file:{data / 'fhir'};DB_CLOSE_ON_EXIT=FALSE",
    ]
    spawn(sandbox, "hapi", argv, dict(os.environ), data)
    note(f"starting on {sandbox.fhir_url} (H2 file database {data / 'fhir.mv.db'})")
    return True


def wait_hapi(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    wait_for(
        lambda: _fhir_metadata_ok(sandbox),
        timeout_s=HAPI_READY_S,
        what="HAPI FHIR /metadata",
        sandbox=sandbox,
        services=("hapi",),
        interval_s=1.0,
    )
    note(f"{sandbox.fhir_url}/metadata answers")


# --- Orthanc -------------------------------------------------------------------------------


def _orthanc_ok(sandbox: Sandbox) -> bool | None:
    return True if requests.get(f"{sandbox.orthanc_url}/system", timeout=2).ok else None


def start_orthanc(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    if read_pid(sandbox, "orthanc") is not None:
        note(f"already running on {sandbox.orthanc_url}")
        return
    if not ORTHANC_BIN.exists() or not DICOMWEB_PLUGIN.exists():
        raise SandboxError(
            f"Orthanc or its DICOMweb plugin is missing ({ORTHANC_BIN}, {DICOMWEB_PLUGIN}): "
            "run bash scripts/install.sh"
        )
    # Orthanc 1.10 listens on every interface (no bind-address option) and refuses
    # non-loopback clients (RemoteAccessAllowed false); check the port on all of them.
    require_port(sandbox.config.orthanc_port, "Orthanc", "--orthanc-port", host="0.0.0.0")
    work = sandbox.path("orthanc")
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "dipro-sandbox",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "HttpPort": sandbox.config.orthanc_port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
    }
    (work / "orthanc.json").write_text(json.dumps(config, indent=2))
    spawn(sandbox, "orthanc", [str(ORTHANC_BIN), str(work / "orthanc.json")], dict(os.environ),
          work)  # fmt: skip
    wait_for(
        lambda: _orthanc_ok(sandbox),
        timeout_s=30,
        what="Orthanc /system",
        sandbox=sandbox,
        services=("orthanc",),
        interval_s=0.1,
    )
    note(f"{sandbox.dicomweb_url}")


# --- checkpoint ----------------------------------------------------------------------------


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "model_card.json").is_file() and (folder / "weights.pt").is_file()


def ensure_checkpoint(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """The checkpoint the DAG scores with, under ``checkpoint/``.

    In order: a checkpoint named by ``--checkpoint`` (copied); the one already in the sandbox;
    the demo's own (``var/demo/checkpoint`` after ``scripts/demo.sh``, the same training);
    else the demo checkpoint trained here with the demo's trainer (minutes, once).
    """
    target = sandbox.checkpoint
    source = sandbox.config.checkpoint_source
    if source:
        source_path = Path(source).resolve()
        if not _is_checkpoint(source_path):
            raise SandboxError(f"--checkpoint {source}: no model_card.json + weights.pt there")
        if source_path != target.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source_path, target)
        note(f"copied from {source_path}")
    elif _is_checkpoint(target):
        note(f"reusing {target}")
    elif _is_checkpoint(DEMO_CHECKPOINT) and _card_name(DEMO_CHECKPOINT) == "dipro-demo":
        shutil.copytree(DEMO_CHECKPOINT, target)
        note(f"copied the demo's checkpoint from {DEMO_CHECKPOINT}")
    else:
        _train_demo_checkpoint(sandbox, note)
    card = json.loads((target / "model_card.json").read_text())
    note(f"{card.get('name')} {card.get('version')}")


def _card_name(folder: Path) -> str | None:
    try:
        name = json.loads((folder / "model_card.json").read_text()).get("name")
    except (OSError, ValueError):
        return None
    return None if name is None else str(name)


def _train_demo_checkpoint(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    from dipro_fhir.demo import DEMO_VERSION, DemoOptions, prepare_cohort, train_from_settings
    from dipro_fhir.settings import embedded_settings
    from dipro_fhir.synth import read_truth

    c = sandbox.config
    say(
        f"training the demo checkpoint once ({c.train_patients} synthetic patients, "
        f"{c.epochs} epochs; about 3 minutes on 2 cores)"
    )
    seed = DemoOptions(workdir=sandbox.root).seed + 1000  # the demo's own training cohort
    work = sandbox.path("train")
    train_dir = work / "train"
    prepare_cohort(train_dir, c.train_patients, seed, None, "train")
    settings = embedded_settings(work)
    settings = settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": train_dir}),
            "dicomweb": settings.dicomweb.model_copy(update={"folder": train_dir / "dicom"}),
        }
    )
    ids = [t.patient_id for t in read_truth(train_dir / "truth.jsonl")]
    partial = sandbox.path("checkpoint.partial")
    shutil.rmtree(partial, ignore_errors=True)
    train_from_settings(
        settings,
        ids,
        partial,
        epochs=c.epochs,
        version=DEMO_VERSION,
        training_data="synthetic ICU cohort generated by dipro_fhir.synth (seeded)",
    )
    partial.rename(sandbox.checkpoint)
    shutil.rmtree(work, ignore_errors=True)
    note(f"trained on {len(ids)} synthetic patients")


# --- synthetic cohort ----------------------------------------------------------------------


def _fhir_count(sandbox: Sandbox, resource_type: str) -> int:
    response = requests.get(
        f"{sandbox.fhir_url}/{resource_type}",
        params={"_summary": "count"},
        headers={"Accept": "application/fhir+json", "Cache-Control": "no-cache"},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json().get("total", 0))


def _orthanc_studies(sandbox: Sandbox) -> int:
    response = requests.get(f"{sandbox.orthanc_url}/studies", timeout=30)
    response.raise_for_status()
    return len(response.json())


def ensure_cohort(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """Load the synthetic cohort into HAPI and Orthanc unless it is already there.

    Admissions spread over the six days before tonight's as-of time, so that there are
    encounters under way tonight and on each of the three nights before (the backfill); the
    cohort's "now" is the load time. Only counts are printed.
    """
    state = sandbox.read_state()
    loaded = state.get("cohort")
    if loaded and sandbox.truth_file.exists():
        patients = _fhir_count(sandbox, "Patient")
        studies = _orthanc_studies(sandbox)
        if patients >= loaded["patients"] and studies >= loaded["studies"]:
            note(f"already loaded ({patients} patients, {studies} studies)")
            return
    from dipro_fhir.fhir.client import FhirClient
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import load_into_servers
    from dipro_fhir.synth.truth_io import truth_to_json

    c = sandbox.config
    reference = datetime.now(UTC).replace(microsecond=0)
    nights = nights_before(reference)
    patients = list(
        generate_cohort(
            c.patients,
            seed=c.seed,
            start=nights[0] - timedelta(days=6),
            admission_span_days=5.5,
            reference_time=reference,
            id_prefix=COHORT_PREFIX,
        )
    )
    with FhirClient(sandbox.fhir_url) as client:
        report = load_into_servers(
            patients, client, sandbox.dicomweb_url, image_size=(c.image_size, c.image_size)
        )
    sandbox.truth_file.parent.mkdir(parents=True, exist_ok=True)
    sandbox.truth_file.write_text("".join(truth_to_json(p.truth) + "\n" for p in patients))
    studies = sum(len(p.studies) for p in patients)
    sandbox.write_state(
        cohort={
            "patients": report.patients,
            "studies": studies,
            "instances": report.instances,
            "reference_time": iso(reference),
            "nights": [iso(n) for n in nights],
            "seed": c.seed,
        }
    )
    note(
        f"{report.patients} patients, {report.bundles} FHIR transactions, "
        f"{report.instances} DICOM instances ({c.image_size} px)"
    )


# --- Airflow -------------------------------------------------------------------------------


def _airflow_secrets(sandbox: Sandbox) -> dict[str, str]:
    """JWT secret and Fernet key shared by the three processes (kept in the sandbox)."""
    path = sandbox.airflow_home / "sandbox-secrets.json"
    if path.exists():
        values: dict[str, str] = json.loads(path.read_text())
        return values
    from cryptography.fernet import Fernet

    values = {"jwt_secret": secrets.token_urlsafe(32), "fernet_key": Fernet.generate_key().decode()}
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def _ensure_password_file(sandbox: Sandbox) -> None:
    if sandbox.password_file.exists():
        return
    sandbox.password_file.write_text(json.dumps({ADMIN: secrets.token_urlsafe(12)}) + "\n")
    sandbox.password_file.chmod(0o600)


def airflow_environ(sandbox: Sandbox) -> dict[str, str]:
    """The environment of every Airflow process of the sandbox (and of ``sandbox.sh airflow``).

    Inherited ``AIRFLOW*`` and ``DIPRO_*`` variables are dropped: the sandbox is configured
    only by its own flags (``--env KEY=VALUE`` adds to it).
    """
    c = sandbox.config
    home = sandbox.airflow_home
    base = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("AIRFLOW") or k.startswith("DIPRO_"))
    }
    secrets_ = _airflow_secrets(sandbox)
    env = {
        **base,
        "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(DAGS_FOLDER), base.get("PYTHONPATH")) if p),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(c.parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": secrets_["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(sandbox.password_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{sandbox.airflow_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sandbox.results_db_url(sandbox.airflow_db),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(c.airflow_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": sandbox.airflow_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        # The DAG's settings: endpoints come from the connections made below.
        "DIPRO_GPU_POOL": POOL,
        "DIPRO_MODEL__CHECKPOINT": str(sandbox.checkpoint),
        "DIPRO_RUN__STAGING_DIR": str(sandbox.path("staging")),
        # Loaded after the fact: `lastUpdated` is the load time; availability from `issued`.
        "DIPRO_RUN__AVAILABILITY": "issued",
        "DIPRO_WRITEBACK__TARGET": "fhir",
        # Synthetic films: drawn in the geometric locator's convention (settings.SYNTHETIC_LOCATOR).
        "DIPRO_IMAGING__LOCATOR": "geometric",
        # HAPI keeps no audit log of its own: the sandbox shows the client's BALP trail.
        "DIPRO_AUDIT__ENABLED": "true",
        "DIPRO_TASK_RETRIES": str(c.task_retries),
        "DIPRO_RETRY_DELAY_S": str(c.retry_delay_s),
    }
    if c.chunk_size is not None:
        env["DIPRO_RUN__CHUNK_SIZE"] = str(c.chunk_size)
    env.update(c.extra_env)
    return env


def _airflow(sandbox: Sandbox, *args: str, timeout_s: float = 300) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), *args],
        env=airflow_environ(sandbox),
        cwd=sandbox.root,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxError(
            f"airflow {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return done.stdout


def airflow_token(sandbox: Sandbox) -> str | None:
    """A JWT for the REST API (SimpleAuthManager admin), or None while it cannot be had."""
    response = requests.post(
        f"{sandbox.airflow_url}/auth/token",
        json={"username": ADMIN, "password": sandbox.admin_password()},
        timeout=10,
    )
    if response.status_code not in (200, 201):
        return None
    token: str = response.json()["access_token"]
    return token


def _rest(sandbox: Sandbox, token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _upsert(session: requests.Session, collection: str, key: str, body: dict[str, Any]) -> str:
    """POST into a collection; on 409 PATCH the existing item. Returns what was done."""
    response = session.post(collection, json=body, timeout=30)
    if response.status_code == 201:
        return "created"
    if response.status_code != 409:
        raise SandboxError(f"POST {collection} answered {response.status_code}: {response.text}")
    response = session.patch(f"{collection}/{key}", json=body, timeout=30)
    if response.status_code != 200:
        raise SandboxError(
            f"PATCH {collection}/{key} answered {response.status_code}: {response.text}"
        )
    return "updated"


def configure_airflow(sandbox: Sandbox, token: str, note: Callable[[str], None]) -> None:
    """The three connections and the scoring pool, through the REST API (idempotent)."""
    c = sandbox.config
    rest = _rest(sandbox, token)
    base = f"{sandbox.airflow_url}/api/v2"
    connections = [
        {
            "connection_id": "dipro_fhir",
            "conn_type": "http",
            "description": "dipro sandbox: HAPI FHIR R4",
            "extra": json.dumps({"base_url": sandbox.fhir_url}),
        },
        {
            "connection_id": "dipro_dicomweb",
            "conn_type": "http",
            "description": "dipro sandbox: Orthanc DICOMweb",
            "extra": json.dumps({"base_url": sandbox.dicomweb_url}),
        },
        {
            "connection_id": "dipro_results_db",
            "conn_type": "postgres",
            "description": "dipro sandbox: results database",
            "host": c.pg_host,
            "port": c.pg_port,
            "login": c.pg_user,
            "schema": c.results_db,
        },
    ]
    done = []
    for conn in connections:
        key = str(conn["connection_id"])
        done.append(f"{key} {_upsert(rest, f'{base}/connections', key, conn)}")
    pool = {
        "name": POOL,
        "slots": 1,
        "description": "dipro sandbox: one scoring task at a time (the GPU)",
        "include_deferred": False,
    }
    done.append(f"pool {POOL} (1 slot) {_upsert(rest, f'{base}/pools', POOL, pool)}")
    note("; ".join(done))


def _dag_parsed(sandbox: Sandbox, token: str) -> dict[str, Any] | None:
    rest = _rest(sandbox, token)
    errors = rest.get(f"{sandbox.airflow_url}/api/v2/importErrors", timeout=10)
    errors.raise_for_status()
    if errors.json()["total_entries"]:
        raise SandboxError(f"the DAG files do not import:\n{errors.text[:4000]}")
    response = rest.get(f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    dag: dict[str, Any] = response.json()
    return dag


def _scheduler_healthy(sandbox: Sandbox) -> bool | None:
    response = requests.get(f"{sandbox.airflow_url}/api/v2/monitor/health", timeout=10)
    if not response.ok:
        return None
    health = response.json()
    ok = all(
        (health.get(part) or {}).get("status") == "healthy"
        for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
    )
    return True if ok else None


def start_airflow_api(sandbox: Sandbox, clock: Clock) -> str:
    """Migrate the metadata DB, start the API server, make the connections and the pool.

    The scheduler starts later (:func:`start_airflow_scheduling`), once the data is loaded:
    the DAG is unpaused, so the scheduler starts tonight's run as soon as it sees the DAG.
    Returns a REST token.
    """
    sandbox.airflow_home.mkdir(parents=True, exist_ok=True)
    _ensure_password_file(sandbox)
    running = {s: read_pid(sandbox, s) for s in AIRFLOW_SERVICES}
    if not any(running.values()):
        with clock.step("airflow db migrate") as note:
            _airflow(sandbox, "db", "migrate")
            note(f"PostgreSQL database {sandbox.airflow_db}")
    with clock.step("airflow api-server") as note:
        service = "airflow-api-server"
        if running[service]:
            note(f"already running on {sandbox.airflow_url}")
        else:
            require_port(sandbox.config.airflow_port, "the Airflow API server", "--airflow-port")
            argv = [str(VENV_BIN / "airflow"), *AIRFLOW_ARGS[service]]
            spawn(sandbox, service, argv, airflow_environ(sandbox), sandbox.root)
        token = wait_for(
            lambda: airflow_token(sandbox),
            timeout_s=120,
            what="an Airflow API token",
            sandbox=sandbox,
            services=(service,),
        )
        note(f"{sandbox.airflow_url} answers")
    with clock.step("airflow connections and pool") as note:
        configure_airflow(sandbox, token, note)
    return token


def start_airflow_scheduling(sandbox: Sandbox, clock: Clock, token: str) -> None:
    """Start the scheduler, the DAG processor and the triggerer; wait until the DAG is parsed
    and unpaused."""
    with clock.step("airflow scheduler, dag-processor and triggerer") as note:
        for service in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
            if read_pid(sandbox, service):
                note(f"{service} already running")
            else:
                argv = [str(VENV_BIN / "airflow"), *AIRFLOW_ARGS[service]]
                spawn(sandbox, service, argv, airflow_environ(sandbox), sandbox.root)
        dag = wait_for(
            lambda: _dag_parsed(sandbox, token),
            timeout_s=180,
            what=f"{DAG_ID} to be parsed",
            sandbox=sandbox,
            services=AIRFLOW_SERVICES,
        )
        if dag["is_paused"]:
            _rest(sandbox, token).patch(
                f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=10
            ).raise_for_status()
            note(f"unpaused {DAG_ID}")
        wait_for(
            lambda: _scheduler_healthy(sandbox),
            timeout_s=120,
            what="scheduler, dag-processor and triggerer heartbeats",
            sandbox=sandbox,
            services=AIRFLOW_SERVICES,
        )
        note(f"{DAG_ID} parsed and unpaused; scheduler, dag-processor and triggerer healthy")


# --- commands ------------------------------------------------------------------------------


def cmd_up(sandbox: Sandbox) -> int:
    clock = Clock()
    sandbox.root.mkdir(parents=True, exist_ok=True)
    say(f"up in {sandbox.root}")
    sandbox.write_state()
    with clock.step("hapi") as note:
        start_hapi(sandbox, note)  # boots in the background (20-80 s) while the rest runs
    with clock.step("orthanc") as note:
        start_orthanc(sandbox, note)
    with clock.step("postgresql") as note:
        ensure_postgres(sandbox, note)
    with clock.step("results database") as note:
        ensure_results_db(sandbox, note)
    with clock.step("checkpoint") as note:
        ensure_checkpoint(sandbox, note)
    token = start_airflow_api(sandbox, clock)
    with clock.step("hapi ready") as note:
        wait_hapi(sandbox, note)
    with clock.step("synthetic cohort") as note:
        ensure_cohort(sandbox, note)
    start_airflow_scheduling(sandbox, clock, token)
    sandbox.write_state(up_seconds=round(clock.total, 1), steps=dict(clock.steps))
    nights = sandbox.read_state()["cohort"]["nights"]
    say(f"ready in {clock.total:.0f} s")
    print_summary(sandbox, nights)
    return 0


def print_summary(sandbox: Sandbox, nights: Sequence[str]) -> None:
    rel = _relative(sandbox.root)
    lines = [
        f"Airflow UI     {sandbox.airflow_url}   login {ADMIN} / {sandbox.admin_password()}"
        f"   (password file {_relative(sandbox.password_file)})",
        f"FHIR (HAPI)    {sandbox.fhir_url}",
        f"DICOMweb       {sandbox.dicomweb_url}",
        f"results DB     {sandbox.results_db_url()}",
        f"logs           {rel}/logs/",
        f"tonight        {nights[0]}: the scheduler starts this night's run of {DAG_ID} "
        "on its own (unpaused, schedule 02:00 UTC)",
        f"backfill       bash scripts/sandbox.sh --dir {rel} airflow backfill create "
        f"--dag-id {DAG_ID} --from-date {nights[-1]} --to-date {nights[1]}",
        f'CLI env        eval "$(bash scripts/sandbox.sh --dir {rel} env)"; dipro-fhir check',
        f"stop           bash scripts/sandbox.sh --dir {rel} down   (add --purge to delete data)",
    ]
    for line in lines:
        print(f"  {line}", flush=True)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def cmd_down(sandbox: Sandbox, purge: bool) -> int:
    t0 = time.monotonic()
    groups = {s: pid for s in reversed(SERVICES) if (pid := read_pid(sandbox, s)) is not None}
    outcome = stop_groups(groups)
    for service in SERVICES:
        sandbox.pid_file(service).unlink(missing_ok=True)
        say(f"{service}: {outcome.get(service, 'not running')}")
    if purge:
        if sandbox.state_file.exists():
            dropped = drop_results_db(sandbox)
            shutil.rmtree(sandbox.root)
            say(
                f"removed {sandbox.root}"
                + (
                    f" and databases {sandbox.config.results_db}, {sandbox.airflow_db}"
                    if dropped
                    else ""
                )
            )
        elif sandbox.root.exists():
            say(f"not removing {sandbox.root}: it has no {STATE_FILE}, so it is no sandbox")
    else:
        say(f"data kept in {sandbox.root} (down --purge deletes it)")
    say(f"down in {time.monotonic() - t0:.1f} s")
    return 1 if any(v.startswith("killed") for v in outcome.values()) else 0


def cmd_status(sandbox: Sandbox) -> int:
    if not sandbox.state_file.exists():
        say(f"no sandbox in {sandbox.root}")
        return 3

    def airflow_part(part: str) -> bool | None:
        response = requests.get(f"{sandbox.airflow_url}/api/v2/monitor/health", timeout=5)
        if not response.ok:
            return None
        return True if (response.json().get(part) or {}).get("status") == "healthy" else None

    probes: dict[str, Callable[[], bool | None]] = {
        "hapi": lambda: _fhir_metadata_ok(sandbox),
        "orthanc": lambda: _orthanc_ok(sandbox),
        "airflow-api-server": lambda: airflow_part("metadatabase"),
        "airflow-scheduler": lambda: airflow_part("scheduler"),
        "airflow-dag-processor": lambda: airflow_part("dag_processor"),
    }
    urls = {"hapi": sandbox.fhir_url, "orthanc": sandbox.dicomweb_url,
            "airflow-api-server": sandbox.airflow_url}  # fmt: skip
    all_up = True
    for service in SERVICES:
        pid = read_pid(sandbox, service)
        health = ""
        if pid is not None and service in probes:
            try:
                health = "healthy" if probes[service]() else "not answering"
            except requests.RequestException:
                health = "not answering"
        all_up &= pid is not None and health != "not answering"
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"  {service:22s} {state:22s} {health:14s} {urls.get(service, '')}", flush=True)
    state = sandbox.read_state()
    if all_up and "cohort" in state:
        print_summary(sandbox, state["cohort"]["nights"])
    return 0 if all_up else 3


def cmd_env(sandbox: Sandbox) -> int:
    """Shell exports for the ``dipro-fhir`` CLI against the sandbox."""
    values = {
        "DIPRO_FHIR__BASE_URL": sandbox.fhir_url,
        "DIPRO_DICOMWEB__BASE_URL": sandbox.dicomweb_url,
        "DIPRO_STORE__URL": sandbox.results_db_url(),
        "DIPRO_MODEL__CHECKPOINT": str(sandbox.checkpoint),
        "DIPRO_RUN__AVAILABILITY": "issued",
        "DIPRO_RUN__STAGING_DIR": str(sandbox.path("staging")),
        "DIPRO_AUDIT__ENABLED": "true",
        "DIPRO_IMAGING__LOCATOR": "geometric",  # synthetic films (settings.SYNTHETIC_LOCATOR)
    }
    for key, value in values.items():
        print(f"export {key}='{value}'")
    return 0


def cmd_airflow(sandbox: Sandbox, args: Sequence[str]) -> int:
    """Run the ``airflow`` CLI with the sandbox's environment (e.g. ``backfill create``)."""
    if not sandbox.state_file.exists():
        raise SandboxError(f"no sandbox in {sandbox.root}: run up first")
    airflow = str(VENV_BIN / "airflow")
    os.chdir(sandbox.root)
    os.execve(airflow, [airflow, *args], airflow_environ(sandbox))
    return 0  # not reached


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not (key.startswith("DIPRO_") or key.startswith("AIRFLOW__")):
        raise argparse.ArgumentTypeError("expected DIPRO_...=VALUE or AIRFLOW__...=VALUE")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bash scripts/sandbox.sh",
        description="The dipro-fhir stack as local processes (no Docker): HAPI FHIR, Orthanc, "
        "PostgreSQL, Airflow 3.",
    )
    parser.add_argument("--dir", default=str(REPO / "var" / "sandbox"),
                        help="sandbox folder (default: var/sandbox)")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything (idempotent)")
    up.add_argument("--hapi-port", type=int, help="default 8080")
    up.add_argument("--orthanc-port", type=int, help="default 8042")
    up.add_argument("--airflow-port", type=int, help="default 8081")
    up.add_argument("--hapi-java-opts", help="JVM options of HAPI (default: the test server's)")
    up.add_argument("--pg-host", help="default 127.0.0.1")
    up.add_argument("--pg-port", type=int, help="default 5432")
    up.add_argument("--results-db", help="results database name (default dipro_sandbox)")
    up.add_argument("--patients", type=int, help="synthetic patients (default 12)")
    up.add_argument("--seed", type=int, help="cohort seed (default 11)")
    up.add_argument("--parallelism", type=int, help="AIRFLOW__CORE__PARALLELISM (default 4)")
    up.add_argument(
        "--chunk-size", type=int, help="DIPRO_RUN__CHUNK_SIZE (default: the project's, 50)"
    )
    up.add_argument("--task-retries", type=int, help="DIPRO_TASK_RETRIES (default 1)")
    up.add_argument(
        "--checkpoint",
        dest="checkpoint_source",
        help="use (copy) this checkpoint folder instead of the demo checkpoint",
    )
    up.add_argument("--train-patients", type=int, help="demo training cohort (default 160)")
    up.add_argument("--epochs", type=int, help="demo training epochs (default 20)")
    up.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                    help="extra DIPRO_*/AIRFLOW__* setting for the Airflow processes")  # fmt: skip
    down = sub.add_parser("down", help="stop every sandbox process")
    down.add_argument(
        "--purge",
        action="store_true",
        help="also delete the sandbox folder and drop the results database",
    )
    sub.add_parser("status", help="what runs, and where")
    sub.add_parser("env", help="print DIPRO_* exports for the dipro-fhir CLI")
    airflow = sub.add_parser("airflow", help="run the airflow CLI in the sandbox's environment")
    airflow.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.command == "up":
        fields = set(Config.__dataclass_fields__) - {"extra_env"}
        overrides = {name: getattr(args, name) for name in fields if hasattr(args, name)}
        if args.env:
            overrides["extra_env"] = dict(args.env)
    sandbox = load_sandbox(Path(args.dir), overrides)
    try:
        if args.command == "up":
            return cmd_up(sandbox)
        if args.command == "down":
            return cmd_down(sandbox, args.purge)
        if args.command == "status":
            return cmd_status(sandbox)
        if args.command == "env":
            return cmd_env(sandbox)
        return cmd_airflow(sandbox, args.args)
    except SandboxError as error:
        say(f"FAILED: {error}")
        if args.command == "up":
            say(f"logs in {sandbox.path('logs')}; stop what started: bash scripts/sandbox.sh "
                f"--dir {_relative(sandbox.root)} down")  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
