"""The images of docker-compose.yml build from what a machine without an image registry has.

Read from ``docker compose config`` (as :mod:`tests.unit.test_compose` does) and from the
Dockerfiles and ``.dockerignore`` themselves; no engine is needed. Building and running the
stack for real is ``tests/e2e/test_docker_compose.py`` (opt-in: ``scripts/docker_e2e.sh``).

* Every image is built here (by one service each; the others never pull it), and every
  Dockerfile starts FROM the one Debian base whose tag
  ``scripts/docker.sh base`` makes (or pulls).
* The build context (the repository root, filtered by ``.dockerignore``, the only ignore file
  the legacy builder reads) holds every file a Dockerfile copies, and not the HAPI jar
  folder or the checkout's other files.
* Each health check runs a program its image has.
* HAPI is built from the tests' HAPI server sources.
* ``deploy/compose/site-ca.yml`` puts a site's CA bundle into every container of the Airflow
  image.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_compose import (
    COMPOSE_FILE,
    HAPI_TEST_SERVER,
    REPO,
    Config,
    Service,
    compose_config,
    dockerfile_bases,
    services,
)

DOCKER_SH = REPO / "scripts" / "docker.sh"
DOCKERIGNORE = REPO / ".dockerignore"
SITE_CA_FILE = REPO / "deploy" / "compose" / "site-ca.yml"
# Health-check programs installed by a Debian package, and that package.
APT_PROGRAMS = {"curl": "curl", "pg_isready": "postgresql-15", "redis-cli": "redis-server"}


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def all_profiles(empty_env_file: Path) -> Config:
    """The stack with every profile (gpu, scoring)."""
    return compose_config(profiles=["gpu", "scoring"], env_file=empty_env_file)


def dockerfile_of(service: Service) -> Path:
    build = service["build"]
    return Path(build["context"]) / build.get("dockerfile", "Dockerfile")


def final_stage(dockerfile: Path) -> str:
    """The text of the last stage (from its FROM line on)."""
    text = dockerfile.read_text()
    starts = [m.start() for m in re.finditer(r"^FROM ", text, re.M)]
    return text[starts[-1] :]


def apt_packages(stage: str) -> set[str]:
    """The packages of ``apt-get install`` in a Dockerfile stage."""
    found: set[str] = set()
    for command in re.findall(r"apt-get install((?:\\\n|[^\n&])+)", stage):
        found |= {w for w in command.split() if not w.startswith("-") and w != "\\"}
    return found


def copy_sources(dockerfile: Path) -> list[str]:
    """Sources of the ``COPY`` lines that read the build context (not ``--from`` a stage)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` leaves ``path`` out of the context (last matching rule wins;
    a rule matches a path or any folder above it, as Docker's)."""
    parts = path.split("/")
    result = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw.removeprefix("!").rstrip("/")
        glob = pattern.replace("**/", "*")
        for depth in range(1, len(parts) + 1):
            if fnmatch.fnmatchcase("/".join(parts[:depth]), glob):
                result = not negated
                break
    return result


def dockerignore_rules() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_every_image_is_built_here_and_never_pulled(all_profiles: Config) -> None:
    built = {s["image"] for s in services(all_profiles).values() if s.get("build")}
    for name, service in services(all_profiles).items():
        if service.get("build"):
            assert dockerfile_of(service).is_file(), name
            continue
        # Built by another service (once: Compose builds per service, not per image).
        assert service["image"] in built, f"{name} would pull {service['image']}"
        assert service.get("pull_policy") == "never", name


def test_the_services_that_build_an_image_start_before_its_other_users(
    all_profiles: Config,
) -> None:
    all_services = services(all_profiles)
    builder = {s["image"]: n for n, s in all_services.items() if s.get("build")}
    for name, service in all_services.items():
        if service.get("build"):
            continue
        waits = set(service.get("depends_on") or {})
        assert builder[service["image"]] in waits | _transitive(all_services, waits), name


def _transitive(all_services: dict[str, Service], names: set[str]) -> set[str]:
    found: set[str] = set()
    todo = list(names)
    while todo:
        for dependency in all_services[todo.pop()].get("depends_on") or {}:
            if dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


def test_every_image_starts_from_the_base_scripts_docker_sh_makes(all_profiles: Config) -> None:
    # scripts/docker.sh reads the tag from the Airflow Dockerfile's ARG DEBIAN_IMAGE.
    made = subprocess.run(
        ["sed", "-n", "s/^ARG DEBIAN_IMAGE=//p", str(REPO / "deploy/airflow/Dockerfile")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert re.fullmatch(r"debian:\d+\.\d+-slim", made), made
    assert "BASE_TAG=$(sed -n 's/^ARG DEBIAN_IMAGE=//p' deploy/airflow/Dockerfile)" in (
        DOCKER_SH.read_text()
    )
    for name, service in services(all_profiles).items():
        if not service.get("build"):
            continue
        bases = set(dockerfile_bases(dockerfile_of(service), service["build"].get("args") or {}))
        assert bases == {made}, (name, bases)


def test_the_build_context_holds_what_the_dockerfiles_copy(all_profiles: Config) -> None:
    rules = dockerignore_rules()
    for name, service in services(all_profiles).items():
        if not service.get("build"):
            continue
        assert Path(service["build"]["context"]) == REPO, f"{name}: context is not the repo root"
        for source in copy_sources(dockerfile_of(service)):
            path = REPO / source
            assert path.exists(), (name, source)
            # The sources a clean checkout holds (build outputs such as the HAPI jar that
            # scripts/install.sh puts under the package are left out of the context on purpose).
            listed = subprocess.run(
                ["git", "-C", str(REPO), "ls-files", "--", source],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            assert listed, (name, source)
            for relative in listed:
                if relative.endswith(".crt"):
                    continue
                assert not ignored(relative, rules), (name, relative)


def test_the_build_context_leaves_out_the_hapi_jar_and_the_checkout(all_profiles: Config) -> None:
    rules = dockerignore_rules()
    for path in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "var/sandbox/x",
                 "dipro_fhir/sandbox/servers/hapi/target/dipro-hapi-test-server.jar",
                 "dipro_fhir/__pycache__/x.pyc"):  # fmt: skip
        assert ignored(path, rules), path


def test_every_health_check_runs_a_program_its_image_has(all_profiles: Config) -> None:
    for name, service in services(all_profiles).items():
        test = (service.get("healthcheck") or {}).get("test") or []
        if not test or test[0] != "CMD":
            continue  # CMD-SHELL: the Celery and Airflow commands of the image's venv
        builder = next(s for s in services(all_profiles).values() if s.get("build")
                       and s["image"] == service["image"])  # fmt: skip
        program, stage = test[1], final_stage(dockerfile_of(builder))
        if program.startswith("/"):
            assert re.search(rf"^COPY \S+ {re.escape(program)}$", stage, re.M), (name, program)
        else:
            assert APT_PROGRAMS[program] in apt_packages(stage), (name, program)


def test_hapi_is_built_from_the_test_servers_sources(all_profiles: Config) -> None:
    hapi = services(all_profiles)["hapi"]
    dockerfile = dockerfile_of(hapi).read_text()
    sources = HAPI_TEST_SERVER.relative_to(REPO).as_posix()
    assert f"COPY {sources}/pom.xml " in dockerfile
    assert f"COPY {sources}/src " in dockerfile
    pom = (HAPI_TEST_SERVER / "pom.xml").read_text()
    artifact = re.search(r"<artifactId>([^<]+)</artifactId>", pom.split("<dependencies>")[0])
    assert artifact, "pom.xml names no artifactId"
    assert "<finalName>${project.artifactId}</finalName>" in pom
    assert re.search(rf"^COPY --from=build /src/target/{artifact.group(1)}\.jar ", dockerfile, re.M)
    version = re.search(r"<hapi-fhir\.version>([^<]+)<", pom)
    assert version, "pom.xml names no hapi-fhir.version"
    assert hapi["image"].endswith(f"-hapi{version.group(1)}"), hapi["image"]


def test_hapi_runs_without_a_shell_that_would_drop_its_dotted_settings(
    all_profiles: Config,
) -> None:
    hapi = services(all_profiles)["hapi"]
    assert any("." in name for name in hapi["environment"]), "no spring.* settings any more?"
    entrypoint = re.findall(r"^ENTRYPOINT (.+)$", final_stage(dockerfile_of(hapi)), re.M)
    assert entrypoint, "the HAPI image has no ENTRYPOINT"
    program = json.loads(entrypoint[-1])[0]
    assert program == "java", f"HAPI starts through {program}: dash drops spring.datasource.url"
    assert not hapi.get("entrypoint"), "docker-compose.yml overrides HAPI's entrypoint"


def test_a_site_ca_override_mounts_the_bundle_into_every_airflow_container(
    empty_env_file: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "site-ca.pem"
    config = compose_config(
        files=[COMPOSE_FILE, SITE_CA_FILE],
        profiles=["gpu", "scoring"],
        variables={"SITE_CA_BUNDLE": str(bundle)},
        env_file=empty_env_file,
    )
    for name, service in services(config).items():
        if not service["image"].startswith("dipro-fhir-airflow:"):
            continue
        mounts = {v["target"]: v for v in service.get("volumes") or []}
        mount = mounts.get("/etc/ssl/certs/ca-certificates.crt")
        assert mount is not None, name
        assert (mount["source"], mount.get("read_only")) == (str(bundle), True), name
