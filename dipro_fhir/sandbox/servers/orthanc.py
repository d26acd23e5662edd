"""A real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on loopback, for the tests and
the benchmarks.

Orthanc 1.10 runs as a plain background process with a JSON config in a work folder:
storage and index in that folder, a free HTTP port, no DICOM port, remote access refused
(1.10 has no bind-address option; it refuses non-loopback clients), the DICOMweb plugin at
``/dicom-web/``; with ``with_auth``, HTTP Basic auth (user ``dipro``, password ``s3cret``).
The sandbox runs its own detached Orthanc with a persistent folder (``sandbox.services``).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ORTHANC_BIN = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AUTH_USER, AUTH_PASSWORD = "dipro", "s3cret"


@dataclass
class OrthancServer:
    """A running Orthanc: URLs, credentials and a reset."""

    base_url: str
    process: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb service root (QIDO/WADO/STOW)."""
        return self.base_url + "/dicom-web"

    def reset(self) -> None:
        """Delete every patient (and so every study) through the REST API."""
        patients = requests.get(f"{self.base_url}/patients", auth=self.auth, timeout=10)
        patients.raise_for_status()
        for pid in patients.json():
            requests.delete(
                f"{self.base_url}/patients/{pid}", auth=self.auth, timeout=30
            ).raise_for_status()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_orthanc(workdir: Path, *, with_auth: bool) -> OrthancServer:
    """Start Orthanc on a free port with its data in ``workdir``; wait until it answers.

    Raises:
        RuntimeError: Orthanc or its DICOMweb plugin is missing, it exited, or it did not
            answer ``/system`` within 30 s.
    """
    if not ORTHANC_BIN.exists() or not DICOMWEB_PLUGIN.exists():
        raise RuntimeError(
            f"Orthanc or its DICOMweb plugin is missing ({ORTHANC_BIN}, {DICOMWEB_PLUGIN}): "
            "run scripts/install.sh, which installs the Debian packages orthanc and "
            "orthanc-dicomweb"
        )
    port = _free_port()
    config = {
        "Name": "dipro-test",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "AuthenticationEnabled": with_auth,
        "RegisteredUsers": {AUTH_USER: AUTH_PASSWORD} if with_auth else {},
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
    }
    (workdir / "orthanc.json").write_text(json.dumps(config))
    log = (workdir / "orthanc.log").open("wb")
    proc = subprocess.Popen(
        [str(ORTHANC_BIN), str(workdir / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
    )
    auth = (AUTH_USER, AUTH_PASSWORD) if with_auth else None
    server = OrthancServer(base_url=f"http://127.0.0.1:{port}", process=proc, auth=auth)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"Orthanc exited with {proc.returncode}; see {workdir / 'orthanc.log'}"
            )
        try:
            if requests.get(f"{server.base_url}/system", auth=auth, timeout=1).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("Orthanc did not answer /system within 30 s")


def stop_orthanc(server: OrthancServer, workdir: Path) -> None:
    """Stop the server (SIGTERM, then SIGKILL) and delete ``workdir``."""
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)
    shutil.rmtree(workdir, ignore_errors=True)
