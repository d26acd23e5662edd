"""The sandbox's building blocks: configuration and state, step output, detached
processes (pid files, process groups, readiness waits, ports) and the nightly clock."""

from __future__ import annotations

import json
import os
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

from dipro_fhir.core.shipped import checkout_root, dags_folder, plugins_folder

#: The source checkout the sandbox runs from, or None when it runs from an installed wheel.
CHECKOUT = checkout_root()
#: How a user runs the sandbox: the checkout's script, or the installed console script.
COMMAND = "bash scripts/sandbox.sh" if CHECKOUT else "dipro-fhir-sandbox"
#: The sandbox folder unless --dir says otherwise.
DEFAULT_DIR = (CHECKOUT or Path.cwd()) / "var" / "sandbox"

VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's bin, not /usr/bin
DAGS_FOLDER = dags_folder()
PLUGINS_FOLDER = plugins_folder()  # the DiPro page (plugins/dipro_ui.py)
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
