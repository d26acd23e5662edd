"""The HAPI FHIR server of the sandbox and the tests: HAPI FHIR JPA, on loopback.

The server is the project's own small Spring Boot application on HAPI FHIR 8.8.0's JPA
libraries (``hapi/`` beside this module; the same HAPI as the compose file's image), FHIR R4 on an
in-memory H2 database, built into one jar by ``hapi/build.sh``. It keeps HAPI's
behaviour our client must cope with: search results reused for 60 s (send
``Cache-Control: no-cache`` for a fresh search), no new version for an unchanged update, 409 for
a stale ``If-Match``, referential integrity on write, next links built from the ``Host`` header.
Bulk Data export (``$export``) and ``$expunge`` are enabled.

FHIR base: ``http://127.0.0.1:<port>/fhir``. The tests' fixtures (``tests/servers/hapi_server.py``)
run one JVM per pytest session; the sandbox runs it detached with a file database. Startup
takes 30-80 s on two cores.

Run it by hand (foreground until Ctrl-C or SIGTERM)::

    python -m dipro_fhir.sandbox.servers.hapi_server --port 8080
    python -m dipro_fhir.sandbox.servers.hapi_server --port 8080 -- \\
        --spring.datasource.url=jdbc:postgresql://127.0.0.1:5432/hapi \\
        --spring.datasource.username=postgres \\
        --spring.jpa.properties.hibernate.dialect=ca.uhn.fhir.jpa.model.dialect.HapiFhirPostgresDialect
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import requests

HAPI_DIR = Path(__file__).resolve().parent / "hapi"
JAR = HAPI_DIR / "target" / "dipro-hapi-test-server.jar"
BUILD_SCRIPT = HAPI_DIR / "build.sh"

STARTUP_TIMEOUT_S = 180.0
BUILD_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 20.0
DEFAULT_JAVA_OPTS: tuple[str, ...] = ("-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
# HAPI advances batch2 jobs ($export) in a maintenance pass every 60 s, so a tiny export takes
# minutes; HAPI's own integration tests shorten the interval the same way.
BATCH2_MAINTENANCE_INTERVAL_MS = 1000

_READY_LINE = re.compile(rb"HAPI FHIR test server listening on port (\d+)")
_JSON = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
_EXPUNGE_EVERYTHING = {
    "resourceType": "Parameters",
    "parameter": [{"name": "expungeEverything", "valueBoolean": True}],
}
# Checked after a reset. no-store: the check itself must not leave a cached search behind.
_RESET_CHECK_TYPES = ("Patient", "Observation", "RiskAssessment", "Provenance", "Binary")
_UNCACHED = {"Accept": "application/fhir+json", "Cache-Control": "no-cache, no-store"}


class HapiServer:
    """A running HAPI FHIR test server process.

    Attributes:
        base_url: FHIR base URL without a trailing slash, e.g. ``http://127.0.0.1:41234/fhir``.
        port: The loopback port it listens on.
        log_path: The file its stdout and stderr go to (removed by :meth:`stop`).
    """

    def __init__(self, process: subprocess.Popen[bytes], log: IO[bytes], log_path: Path) -> None:
        self._process = process
        self._log = log
        self.log_path = log_path
        self.port = 0
        self.base_url = ""

    def reset(self) -> None:
        """Empty the server: ``$expunge`` with ``expungeEverything``, then check it is empty.

        Expunging everything also drops HAPI's stored searches, so no search made before the
        reset is answered from the 60 s cache afterwards.

        Raises:
            RuntimeError: The expunge failed, or resources are still there afterwards.
        """
        response = requests.post(
            f"{self.base_url}/$expunge", json=_EXPUNGE_EVERYTHING, headers=_JSON, timeout=120
        )
        if response.status_code != 200:
            raise RuntimeError(
                f"HAPI $expunge answered {response.status_code}: {response.text[:1000]}"
            )
        for resource_type in _RESET_CHECK_TYPES:
            found = requests.get(
                f"{self.base_url}/{resource_type}",
                params={"_summary": "count"},
                headers=_UNCACHED,
                timeout=30,
            )
            found.raise_for_status()
            total = found.json().get("total")
            if total != 0:
                raise RuntimeError(f"HAPI still holds {total} {resource_type} after $expunge")

    def stderr_text(self) -> str:
        """Return what the server logged so far (stdout and stderr; for failure messages)."""
        return self.log_path.read_bytes().decode("utf-8", errors="replace")

    def wait(self) -> int:
        """Block until the process exits by itself; return its exit status."""
        return self._process.wait()

    def stop(self) -> None:
        """Stop the JVM (SIGTERM, then SIGKILL) and remove its log. Safe to call twice."""
        atexit.unregister(self.stop)
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=STOP_TIMEOUT_S)
        if not self._log.closed:
            self._log.close()
            self.log_path.unlink(missing_ok=True)

    def _wait_until_ready(self, timeout_s: float) -> None:
        """Wait for the port in the log, then for ``/metadata`` to answer 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"exited with status {self._process.returncode}")
            if not self.port:
                match = _READY_LINE.search(self.log_path.read_bytes())
                if match:
                    self.port = int(match.group(1))
                    self.base_url = f"http://127.0.0.1:{self.port}/fhir"
            if self.port and _metadata_answers(self.base_url):
                return
            time.sleep(0.25)
        raise RuntimeError(f"not ready within {timeout_s:.0f} s")


def _metadata_answers(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/metadata", headers=_JSON, timeout=10).status_code == 200
    except requests.RequestException:
        return False


def ensure_jar() -> Path:
    """Build the server jar unless it is up to date (``hapi/build.sh`` decides; it locks
    against parallel pytest workers and builds offline when ``~/.m2`` allows).

    Raises:
        RuntimeError: The build failed.
    """
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0 or not JAR.is_file():
        output = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({result.returncode}):\n{output}")
    return JAR


def _die_with_parent() -> None:
    """In the child before exec: have Linux send SIGTERM when the parent dies, so the JVM cannot
    outlive a killed test run. (Linux ties this to the thread that started the child: start the
    server from a thread that lives as long as the server, as pytest's main thread does.)"""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_hapi_server(
    *,
    port: int | None = None,
    java_opts: Sequence[str] = DEFAULT_JAVA_OPTS,
    extra_args: Sequence[str] = (),
    batch2_interval_ms: int = BATCH2_MAINTENANCE_INTERVAL_MS,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> HapiServer:
    """Build the jar if needed, start the server on loopback and wait until ``/metadata`` answers.

    Args:
        port: Port to listen on; None lets the server pick a free one (it logs which, so there
            is no race with other processes picking ports).
        java_opts: JVM options, before ``-jar``.
        extra_args: Spring Boot arguments (``--key=value``) after the jar, e.g. a PostgreSQL
            ``--spring.datasource.url``; they override application.yaml.
        batch2_interval_ms: Batch2 maintenance interval (HAPI's default is 60000).
        timeout_s: How long to wait for readiness.

    Raises:
        RuntimeError: java is missing, the build failed, or the server did not become ready
            (the message ends with the server's log).
    """
    java = os.environ.get("JAVA", "java")
    jar = ensure_jar()
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server; see stop()
        prefix="dipro-hapi-", suffix=".log", delete=False
    )
    command = [
        java,
        *java_opts,
        "-jar",
        str(jar),
        f"--server.port={port or 0}",
        f"--dipro.hapi.batch2-maintenance-interval-ms={batch2_interval_ms}",
        *extra_args,
    ]
    try:
        process = subprocess.Popen(
            command,
            cwd=HAPI_DIR / "target",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except FileNotFoundError as error:
        log.close()
        Path(log.name).unlink(missing_ok=True)
        raise RuntimeError(f"{java} not found: install Java 17 (see scripts/install.sh)") from error
    server = HapiServer(process, log, Path(log.name))
    atexit.register(server.stop)
    try:
        server._wait_until_ready(timeout_s)
    except RuntimeError as error:
        message = server.stderr_text()[-4000:]
        server.stop()
        raise RuntimeError(f"HAPI FHIR test server did not start: {error}\n{message}") from None
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground, print its base URL, stop it on Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m dipro_fhir.sandbox.servers.hapi_server",
        description="Run the HAPI FHIR test server on 127.0.0.1 until interrupted.",
        epilog="Arguments after -- go to Spring Boot, e.g. --spring.datasource.url=...",
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument(
        "--batch2-interval-ms",
        type=int,
        default=BATCH2_MAINTENANCE_INTERVAL_MS,
        help="batch2 maintenance interval (HAPI's default: 60000)",
    )
    parser.add_argument(
        "--java-opts",
        default=" ".join(DEFAULT_JAVA_OPTS),
        help="JVM options (default: %(default)s, tuned to start fast)",
    )
    parser.add_argument("spring_args", nargs="*", help="Spring Boot --key=value arguments")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    server = start_hapi_server(
        port=args.port,
        java_opts=shlex.split(args.java_opts),
        extra_args=args.spring_args,
        batch2_interval_ms=args.batch2_interval_ms,
    )
    print(server.base_url, flush=True)
    try:
        status = server.wait()
        print(server.stderr_text()[-4000:], file=sys.stderr)
        return status or 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
