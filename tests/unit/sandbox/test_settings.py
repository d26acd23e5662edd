"""The sandbox's settings: ``env`` gives a shell that runs ``dipro-fhir`` with the settings the
DAG's tasks see, ``up --env`` merges into the saved ones (``KEY=`` drops one), and a running
Airflow process whose settings changed is stopped so that ``up`` starts it with the new ones.

No server is started: ``env`` only prints, and the running "Airflow process" is a ``sleep``
started the way the sandbox starts its processes (own process group, pid file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dipro_fhir.sandbox.core import VENV_BIN, Sandbox, load_sandbox, read_pid, spawn

REPO = Path(__file__).resolve().parents[3]
BARE_PATH = "/usr/bin:/bin"  # a login shell's PATH: no venv on it


def _saved_sandbox(root: Path, extra_env: dict[str, str]) -> Sandbox:
    sandbox = load_sandbox(root)
    sandbox.config.extra_env = dict(extra_env)
    sandbox.root.mkdir(parents=True, exist_ok=True)
    sandbox.write_state()
    return sandbox


def _in_a_shell(root: Path, then: str) -> subprocess.CompletedProcess[str]:
    """``eval "$(sandbox env)"; <then>`` in bash with a PATH that has no venv on it."""
    env_command = f"{sys.executable} -m dipro_fhir.sandbox --dir {root} env"
    environ = {
        "PATH": BARE_PATH,
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        ["bash", "-c", f'eval "$({env_command})"; {then}'],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_printed_cli_env_puts_dipro_fhir_on_the_path(tmp_path: Path) -> None:
    _saved_sandbox(tmp_path / "sbx", {})
    done = _in_a_shell(tmp_path / "sbx", "command -v dipro-fhir && dipro-fhir --help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == str(VENV_BIN / "dipro-fhir")
    assert "usage: dipro-fhir" in done.stdout


def test_env_exports_the_saved_settings_over_the_sandboxs_own(tmp_path: Path) -> None:
    _saved_sandbox(
        tmp_path / "sbx",
        {
            "DIPRO_IMAGING__LOCATOR": "atlas",  # the sandbox's own default is geometric
            "DIPRO_MODEL__MIN_MORTALITY_AUROC": "0.99",
            "DIPRO_RUN__LOG_SALT": "it's salty; $HOME",  # quoted, never expanded
            "AIRFLOW__CORE__PARALLELISM": "2",  # for the Airflow processes only
        },
    )
    done = _in_a_shell(
        tmp_path / "sbx",
        'printf "%s|%s|%s|%s|%s" "$DIPRO_IMAGING__LOCATOR" "$DIPRO_MODEL__MIN_MORTALITY_AUROC"'
        ' "$DIPRO_RUN__LOG_SALT" "${AIRFLOW__CORE__PARALLELISM:-unset}" "$DIPRO_FHIR__BASE_URL"',
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("atlas|0.99|it's salty; $HOME|unset|http://127.0.0.1:8080/fhir"), (
        done.stdout
    )


def test_up_env_merges_into_the_saved_settings_and_an_empty_value_drops_one(
    tmp_path: Path,
) -> None:
    from dipro_fhir.sandbox.main import build_parser, configure

    root = tmp_path / "sbx"
    _saved_sandbox(root, {"DIPRO_A": "1", "DIPRO_B": "2"})
    args = build_parser().parse_args(
        ["--dir", str(root), "up", "--env", "DIPRO_C=3", "--env", "DIPRO_A="]
    )
    assert configure(args).config.extra_env == {"DIPRO_B": "2", "DIPRO_C": "3"}
    plain = build_parser().parse_args(["--dir", str(root), "up"])
    assert configure(plain).config.extra_env == {"DIPRO_A": "1", "DIPRO_B": "2"}


def test_a_running_airflow_process_with_changed_settings_is_stopped_for_its_restart(
    tmp_path: Path,
) -> None:
    from dipro_fhir.sandbox.airflow_services import airflow_settings, stop_for_changed_settings
    from dipro_fhir.sandbox.settings import record_started

    sandbox = _saved_sandbox(tmp_path / "sbx", {"DIPRO_A": "1"})
    service = "airflow-scheduler"
    process = spawn(sandbox, service, ["sleep", "120"], {"PATH": BARE_PATH}, sandbox.root)
    try:
        record_started(sandbox, service, airflow_settings(sandbox))
        assert stop_for_changed_settings(sandbox) == []  # nothing changed: left running
        assert read_pid(sandbox, service) == process.pid

        sandbox.config.extra_env = {"DIPRO_B": "2"}  # A dropped, B set
        lines = stop_for_changed_settings(sandbox)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"{service}: restarting")
        assert "DIPRO_A, DIPRO_B" in lines[0]
        assert "2" not in lines[0].replace(service, "")  # keys, never values
        process.wait(timeout=30)
        assert read_pid(sandbox, service) is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ([], {"DIPRO_A": "1"}),
        ([("DIPRO_A", "2")], {"DIPRO_A": "2"}),
        ([("DIPRO_A", "")], {}),
        ([("DIPRO_B", ""), ("DIPRO_B", "x")], {"DIPRO_A": "1", "DIPRO_B": "x"}),
    ],
)
def test_merge_env(changes: list[tuple[str, str]], expected: dict[str, str]) -> None:
    from dipro_fhir.sandbox.settings import merge_env

    assert merge_env({"DIPRO_A": "1"}, changes) == expected
