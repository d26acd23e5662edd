"""The README's first command, ``dipro-fhir demo``, end to end: synthetic cohort, the shipped
checkpoint, the nightly DAG under ``airflow dags test``, the report. The terminal shows the
demo's own lines and a table; Airflow's output goes to the log file the demo names."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_demo_scores_every_patient_through_airflow_and_writes_the_report(
    tmp_path: Path,
) -> None:
    work = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "dipro_fhir.cli", "-q", "demo", "--workdir", str(work),
         "--patients", "12"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = re.search(r"^(\d+) patients scored", done.stdout, re.M)
    assert found, done.stdout[-3000:]
    scored = int(found.group(1))
    assert scored >= 5
    assert "(Airflow dag.test)" in done.stdout
    # The demo's own lines, a table of the risk spread per task, where everything is.
    lines = done.stdout.splitlines()
    assert len(lines) <= 40, done.stdout
    for internal in ("[DAG TEST]", "[info", " INFO ", "Traceback"):
        assert internal not in done.stdout + done.stderr, internal
    assert re.search(
        r"^mortality\s+death\s+\d+\s+0\.\d{3}\s+0\.\d{3}\s+0\.\d{3}", done.stdout, re.M
    )
    assert re.search(r"^length of stay\s", done.stdout, re.M)
    assert re.search(r"^progression\s+\w+ worsened\s", done.stdout, re.M)
    named = re.search(r"^log\s+: (\S+)", done.stdout, re.M)
    assert named, done.stdout
    log = Path(named.group(1)).read_text()
    assert "[DAG TEST] starting task_id=plan" in log  # Airflow's internals are there
    assert f"report           : {work / 'report.html'}" in done.stdout
    lines = (work / "results" / "RiskAssessment.ndjson").read_text().splitlines()
    patients = {json.loads(line)["subject"]["reference"] for line in lines}
    assert len(patients) == scored
    assert len(lines) >= 2 * scored  # mortality and length of stay at least
    with sqlite3.connect(work / "results.sqlite") as db:
        runs = db.execute("SELECT status FROM runs").fetchall()
    assert runs == [("success",)]
    html = (work / "report.html").read_text()
    assert "<svg" in html
    assert "Validation" in html or "validation" in html
