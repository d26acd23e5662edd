"""The wheel carries what an installed package needs to run the sandbox and migrate its
database, and the package needs nothing of the test tree.

``scripts/sandbox_from_wheel.sh`` runs the sandbox from such a wheel in a fresh venv; these
tests pin the contents that makes possible, in seconds.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "dipro_fhir"


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The file names in a wheel built from a copy of the checkout (no build output)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "target", "*.egg-info", "build")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("dipro_fhir", "model", "dags", "plugins"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(work / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("dipro_fhir-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_ships_migrations_dags_plugin_the_hapi_sources_and_the_demo_checkpoint(
    wheel_names: set[str],
) -> None:
    versions = sorted((PACKAGE / "store" / "migrations" / "versions").glob("*.py"))
    assert versions, "no migration versions in the checkout"
    needed = {
        "dipro_fhir/store/migrations/env.py",
        "dipro_fhir/store/migrations/script.py.mako",
        *(f"dipro_fhir/store/migrations/versions/{p.name}" for p in versions),
        "dipro_fhir/sandbox/servers/hapi/pom.xml",
        "dipro_fhir/sandbox/servers/hapi/build.sh",
        "dipro_fhir/training/demo_checkpoint/weights.pt",
        "dipro_fhir/training/demo_checkpoint/model_card.json",
        "dipro_fhir/py.typed",
    }
    assert needed <= wheel_names, sorted(needed - wheel_names)
    java = {n for n in wheel_names if n.startswith("dipro_fhir/sandbox/servers/hapi/src/")}
    assert any(n.endswith(".java") for n in java)
    assert any(n.endswith(".yaml") for n in java)
    dags = {n.rsplit("/", 1)[1] for n in wheel_names if "/data/share/dipro-fhir/dags/" in n}
    assert {p.name for p in (REPO / "dags").glob("*.py")} | {".airflowignore"} <= dags
    plugins = {n.rsplit("/", 1)[1] for n in wheel_names if "/data/share/dipro-fhir/plugins/" in n}
    assert "dipro_ui.py" in plugins  # the DiPro page (dipro_fhir.core.shipped.plugins_folder)


def test_the_wheel_holds_no_tests_and_no_build_output(wheel_names: set[str]) -> None:
    assert not [n for n in wheel_names if n.startswith("tests/")]
    assert not [n for n in wheel_names if "/target/" in n or n.endswith(".jar")]
    assert not [n for n in wheel_names if "__pycache__" in n]


def test_no_module_of_the_package_imports_the_test_tree() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "tests" or n.startswith("tests.") for n in names):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders
