"""The compose stack of docker-compose.yml, driven as a user drives it: ``docker compose``.

:class:`ComposeStack` runs ``docker compose`` with its own project name and free host ports
(nothing of a user's ``dipro-fhir`` stack or of the machine's servers is touched), against
the engine of ``DOCKER_HOST`` (``scripts/docker.sh`` starts one). It times what it does
(``figures``), reads the Airflow admin password the API server generated, and gives a REST
session, the FHIR base URL and the results database URL on the published ports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
PASSWORDS_FILE = "/opt/airflow/simple_auth_manager_passwords.json.generated"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ComposeStack:
    """One compose project of the repository's docker-compose.yml."""

    project: str
    profiles: tuple[str, ...] = ()
    variables: dict[str, str] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)

    @classmethod
    def with_free_ports(
        cls, project: str, profiles: tuple[str, ...] = (), **variables: str
    ) -> ComposeStack:
        ports = {
            name: str(free_port())
            for name in ("HAPI_PORT", "ORTHANC_PORT", "POSTGRES_PORT", "AIRFLOW_PORT")
        }
        return cls(project, profiles, {**ports, **variables})

    def environ(self) -> dict[str, str]:
        kept = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "HTTP_PROXY", "HTTPS_PROXY",
                "NO_PROXY", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST",
                "TORCH_INDEX_URL", "DEBIAN_MIRROR", "MAVEN_MIRROR_URL")  # fmt: skip
        environ = {name: os.environ[name] for name in kept if name in os.environ}
        environ.update(self.variables)
        return environ

    def compose(
        self, *args: str, timeout_s: float = 600, check: bool = True, figure: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose -p PROJECT [--profile P] ARGS`` in the repository root."""
        command = ["docker", "compose", "-p", self.project]
        for profile in self.profiles:
            command += ["--profile", profile]
        start = time.monotonic()
        result = subprocess.run(
            [*command, *args],
            cwd=REPO,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if figure is not None:
            self.figures[figure] = round(time.monotonic() - start, 1)
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def containers(self) -> list[dict[str, Any]]:
        """``docker compose ps -a`` as dicts (Service, State, Health, ExitCode, ID...)."""
        out = self.compose("ps", "-a", "--format", "json").stdout
        lines = [line for line in out.splitlines() if line.strip()]
        if len(lines) == 1 and lines[0].startswith("["):
            return list(json.loads(lines[0]))
        return [json.loads(line) for line in lines]

    def container_id(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def exec(
        self, service: str, *command: str, timeout_s: float = 600, figure: str | None = None
    ) -> str:
        return self.compose(
            "exec", "-T", service, *command, timeout_s=timeout_s, figure=figure
        ).stdout

    def logs(self, *services: str, tail: int = 60) -> str:
        return self.compose(
            "logs", "--no-color", "--tail", str(tail), *services, check=False
        ).stdout

    # --- published endpoints ---------------------------------------------------------------

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.variables['AIRFLOW_PORT']}"

    @property
    def fhir_url(self) -> str:
        return f"http://127.0.0.1:{self.variables['HAPI_PORT']}/fhir"

    @property
    def results_db_url(self) -> str:
        port = self.variables["POSTGRES_PORT"]
        return f"postgresql+psycopg2://dipro:dipro@127.0.0.1:{port}/dipro"

    def admin_password(self) -> str:
        return str(json.loads(self.exec("airflow-api-server", "cat", PASSWORDS_FILE))["admin"])

    def rest(self) -> requests.Session:
        """A session with a bearer token of Airflow's admin (``POST /auth/token``)."""
        token = requests.post(
            f"{self.airflow_url}/auth/token",
            json={"username": "admin", "password": self.admin_password()},
            timeout=30,
        )
        assert token.status_code == 201, token.text
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        return session
