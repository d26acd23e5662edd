"""docker-compose.yml keeps the promises a new user relies on.

The stack cannot start here (no Docker engine), so the checks read the file as Docker Compose
resolves it: ``docker compose config --format json`` (anchors merged, variables interpolated,
profiles applied), with an empty env file and none of this shell's variables, so a developer's
``.env`` changes nothing. The DAG's queues come from a real ``DagBag`` parse in a child process
with the DAG processor's environment (nothing outside ``tests/e2e`` imports Airflow), the DAG's
own option names from ``dags/_dipro_common.py``, the settings from
:class:`dipro_fhir.core.settings.Settings`, and HAPI's from the test server's ``application.yaml``
and ``pom.xml``.

Without the ``docker`` client or its compose plugin the tests that read the configuration
skip, and fail under CI (``CI=true``). The checkpoint script's tests run the script itself.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import BaseModel

from dipro_fhir.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SITE_CHECKPOINT_FILE = REPO / "deploy" / "compose" / "site-checkpoint.yml"
CHECKPOINT_SCRIPT = REPO / "deploy" / "airflow" / "ensure-checkpoint.sh"
AIRFLOW_DOCKERFILE = REPO / "deploy" / "airflow" / "Dockerfile"
DAGS_FOLDER = REPO / "dags"
DAG_OPTIONS_MODULE = DAGS_FOLDER / "_dipro_common.py"
HAPI_TEST_SERVER = REPO / "dipro_fhir" / "sandbox" / "servers" / "hapi"
HAPI_TEST_CONFIG = HAPI_TEST_SERVER / "src" / "main" / "resources" / "application.yaml"

CHECKPOINT_INIT = "dipro-checkpoint-init"
GPU_WORKER = "airflow-worker-gpu"
SCORING_TASK = ("dipro_nightly", "score")

Service = dict[str, Any]
Config = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# docker compose config


def _docker() -> str:
    """The docker client with the compose plugin, or skip (fail under CI) without them."""
    docker = shutil.which("docker")
    problem = "the docker client is not installed" if docker is None else None
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode != 0:
            first_line = (probe.stderr.strip().splitlines() or ["no output"])[0]
            problem = f"`docker compose` is not available ({first_line})"
    if problem is None:
        assert docker is not None
        return docker
    message = (
        f"{problem}; these tests read `docker compose config` "
        "(deploy/compose/install-compose-plugin.sh installs the plugin)"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def compose_config(
    files: Sequence[Path] = (COMPOSE_FILE,),
    profiles: Sequence[str] = (),
    variables: Mapping[str, str] | None = None,
    *,
    env_file: Path,
) -> Config:
    """``docker compose config`` as a dict, with only ``variables`` for interpolation."""
    docker = _docker()
    kept = ("PATH", "HOME", "DOCKER_CONFIG")
    environ = {name: os.environ[name] for name in kept if name in os.environ}
    environ.update(variables or {})
    command = [docker, "compose", "--env-file", str(env_file), "--project-directory", str(REPO)]
    for file in files:
        command += ["-f", str(file)]
    for profile in profiles:
        command += ["--profile", profile]
    command += ["config", "--format", "json"]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env=environ, check=False
    )
    assert result.returncode == 0, result.stderr
    return cast(Config, json.loads(result.stdout))


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def default_config(empty_env_file: Path) -> Config:
    """The stack of ``docker compose up`` (no profile)."""
    return compose_config(env_file=empty_env_file)


@pytest.fixture(scope="module")
def gpu_config(empty_env_file: Path) -> Config:
    """The stack of ``docker compose --profile gpu up``."""
    return compose_config(profiles=["gpu"], env_file=empty_env_file)


def services(config: Config) -> dict[str, Service]:
    return cast(dict[str, Service], config["services"])


def command_of(service: Service) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def environment_of(service: Service) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in (service.get("environment") or {}).items()}


def is_celery_worker(service: Service) -> bool:
    command = command_of(service)
    return command[:2] == ["celery", "worker"]


def celery_workers(config: Config) -> dict[str, Service]:
    return {name: s for name, s in services(config).items() if is_celery_worker(s)}


def worker_queues(service: Service) -> set[str]:
    """The queues a ``celery worker`` command consumes (Airflow's default queue without -q)."""
    command = command_of(service)
    for i, arg in enumerate(command):
        if arg in ("--queues", "-q") and i + 1 < len(command):
            return {q.strip() for q in command[i + 1].split(",") if q.strip()}
        if arg.startswith("--queues="):
            return {q.strip() for q in arg.split("=", 1)[1].split(",") if q.strip()}
    return {environment_of(service).get("AIRFLOW__OPERATORS__DEFAULT_QUEUE") or "default"}


def served_queues(config: Config) -> set[str]:
    return set().union(*(worker_queues(s) for s in celery_workers(config).values()))


def the_service(config: Config, command: str) -> Service:
    """The one service whose command is ``command`` (``dag-processor``, ``triggerer``...)."""
    found = [s for s in services(config).values() if command_of(s) == [command]]
    assert len(found) == 1, f"expected one service running `{command}`, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# What the DAG, the settings and the HAPI test server say


_PARSE_DAGS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
queues = {dag_id: {t.task_id: t.queue for t in dag.tasks} for dag_id, dag in bag.dags.items()}
errors = {path: str(error) for path, error in bag.import_errors.items()}
with open(sys.argv[2], "w") as out:
    json.dump({"queues": queues, "errors": errors}, out)
"""


@pytest.fixture(scope="module")
def task_queues(
    default_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], str]:
    """``(dag_id, task_id) -> queue`` of every task, parsed with the DAG processor's environment."""
    home = tmp_path_factory.mktemp("airflow-home")
    processor_env = environment_of(the_service(default_config, "dag-processor"))
    parse_time = {
        k: v
        for k, v in processor_env.items()
        if k.startswith("DIPRO_") or k.startswith("AIRFLOW__OPERATORS__")
    }
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DIPRO_", "AIRFLOW"))}
    environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=str(DAGS_FOLDER),  # as the DAG processor puts the bundle on sys.path
        **parse_time,
    )
    out = home / "queues.json"
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_DAGS, str(DAGS_FOLDER), str(out)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    parsed = json.loads(out.read_text())
    assert parsed["errors"] == {}
    queues = {
        (dag_id, task_id): queue
        for dag_id, tasks in parsed["queues"].items()
        for task_id, queue in tasks.items()
    }
    assert SCORING_TASK in queues, "the DAG has no scoring task any more"
    return queues


def dag_option_names() -> set[str]:
    """The ``DIPRO_*`` names ``DagOptions.from_environ`` reads (``read("DIPRO_...", ...)``)."""
    tree = ast.parse(DAG_OPTIONS_MODULE.read_text())
    names = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "read"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and node.args[0].value.startswith("DIPRO_")
    }
    assert "DIPRO_GPU_QUEUE" in names, "DagOptions.from_environ no longer reads as expected"
    return names


def resolves_to_a_setting(name: str) -> bool:
    """Whether ``DIPRO_<SECTION>__<FIELD>`` names a field of :class:`Settings`."""
    parts = name.removeprefix("DIPRO_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        last = i == len(parts) - 1
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if last:
                return False  # a whole section is not one variable
            model = annotation
        elif not last:
            return False
    return True


def flatten(tree: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name)
        else:
            yield name, value


def as_env_value(value: Any) -> str:
    """A YAML scalar as Spring reads it from an environment variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dockerfile_bases(dockerfile: Path, build_args: Mapping[str, str]) -> list[str]:
    """The images of the ``FROM`` lines, ``${ARG}`` resolved (build args over defaults)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    bases: list[str] = []
    for line in dockerfile.read_text().splitlines():
        words = [w for w in line.split() if not w.startswith("--")]  # --platform=...
        if not words or words[0].upper() not in ("ARG", "FROM"):
            continue
        if words[0].upper() == "ARG":
            name, _, default = words[1].partition("=")
            args.setdefault(name, build_args.get(name, default))
            continue
        image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[1])
        if image not in stages:
            bases.append(image)
        if len(words) >= 4 and words[2].upper() == "AS":
            stages.add(words[3])
    return bases


def pin_problem(image: str) -> str | None:
    """Why ``image`` is not pinned to one version, or None."""
    name, _, digest = image.partition("@")
    if digest:
        return None
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest":
        return "is :latest"
    if not re.search(r"\d", tag) or re.fullmatch(r"\d+", tag):
        return f"tag {tag!r} is no exact version"
    return None


def mount_targets(service: Service) -> dict[str, dict[str, Any]]:
    return {str(v["target"]): v for v in service.get("volumes") or []}


def volume_holding(service: Service, path: str) -> dict[str, Any] | None:
    """The mount of ``service`` that ``path`` lies in (the deepest one)."""
    holding = [
        (target, mount)
        for target, mount in mount_targets(service).items()
        if path == target or path.startswith(target.rstrip("/") + "/")
    ]
    return max(holding, key=lambda item: len(item[0]))[1] if holding else None


# ---------------------------------------------------------------------------------------------
# Queues and workers


def test_every_queue_the_dag_uses_has_a_worker_without_any_profile(
    default_config: Config, task_queues: dict[tuple[str, str], str]
) -> None:
    missing = set(task_queues.values()) - served_queues(default_config)
    assert not missing, f"no worker of `docker compose up` serves the queues {sorted(missing)}"


def test_gpu_worker_runs_only_with_the_gpu_profile(
    default_config: Config, gpu_config: Config, task_queues: dict[tuple[str, str], str]
) -> None:
    assert GPU_WORKER not in services(default_config)
    gpu_worker = services(gpu_config)[GPU_WORKER]
    assert worker_queues(gpu_worker) == {task_queues[SCORING_TASK]}  # scoring and nothing else
    devices = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d.get("capabilities", []) for d in devices)
    assert environment_of(gpu_worker)["DIPRO_MODEL__DEVICE"] == "cuda"


def test_with_the_gpu_profile_the_cpu_worker_can_leave_the_gpu_queue(
    empty_env_file: Path, task_queues: dict[tuple[str, str], str]
) -> None:
    config = compose_config(
        profiles=["gpu"], variables={"DIPRO_CPU_WORKER_QUEUES": "default"}, env_file=empty_env_file
    )
    assert task_queues[SCORING_TASK] not in worker_queues(services(config)["airflow-worker"])
    assert set(task_queues.values()) <= served_queues(config)


def test_celery_workers_set_dumb_init_setsid_to_0(gpu_config: Config) -> None:
    workers = celery_workers(gpu_config)
    assert {"airflow-worker", GPU_WORKER} <= set(workers)
    for name, worker in workers.items():
        assert environment_of(worker).get("DUMB_INIT_SETSID") == "0", name


def test_a_triggerer_runs_for_deferrable_operators(default_config: Config) -> None:
    triggerer = the_service(default_config, "triggerer")
    assert triggerer.get("restart") != "no"


# ---------------------------------------------------------------------------------------------
# Health checks


def test_every_long_running_service_has_a_health_check(gpu_config: Config) -> None:
    for name, service in services(gpu_config).items():
        if service.get("restart") == "no":
            continue  # one-shot: others wait for it to complete, not to be healthy
        check = service.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} has its health check disabled"


def test_services_waited_on_as_healthy_have_health_checks(gpu_config: Config) -> None:
    all_services = services(gpu_config)
    for name, service in all_services.items():
        for dependency, how in (service.get("depends_on") or {}).items():
            if how.get("condition") == "service_healthy":
                check = all_services[dependency].get("healthcheck") or {}
                assert check.get("test"), f"{name} waits for {dependency} to be healthy"


def test_workers_wait_for_healthy_fhir_and_dicomweb_servers(gpu_config: Config) -> None:
    for name, worker in celery_workers(gpu_config).items():
        depends = worker.get("depends_on") or {}
        for server in ("hapi", "orthanc", "postgres"):
            assert depends.get(server, {}).get("condition") == "service_healthy", (name, server)


def test_every_image_is_pinned_to_a_version(gpu_config: Config) -> None:
    for name, service in services(gpu_config).items():
        image = service.get("image")
        assert image, f"{name} has no image name (a built image needs an explicit tag)"
        problem = pin_problem(image)
        assert problem is None, f"{name}: {image} {problem}"


def test_every_image_built_here_starts_from_a_pinned_image(gpu_config: Config) -> None:
    for name, service in services(gpu_config).items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
        for base in dockerfile_bases(dockerfile, build.get("args") or {}):
            problem = pin_problem(base)
            assert problem is None, f"{name}: {dockerfile.name} FROM {base} {problem}"


def test_every_dipro_variable_is_a_setting_or_a_dag_option(gpu_config: Config) -> None:
    dag_options = dag_option_names()
    for name, service in services(gpu_config).items():
        for variable in environment_of(service):
            if not variable.startswith("DIPRO_") or variable in dag_options:
                continue
            assert resolves_to_a_setting(variable), f"{name}: {variable} is no setting"


def test_dipro_environment_of_every_service_validates_as_settings(
    gpu_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("DIPRO_"):
            monkeypatch.delenv(name)
    for name, service in services(gpu_config).items():
        dipro = {k: v for k, v in environment_of(service).items() if k.startswith("DIPRO_")}
        with monkeypatch.context() as patch:
            for variable, value in dipro.items():
                patch.setenv(variable, value)
            try:
                Settings()
            except ValueError as error:
                pytest.fail(f"{name}: its DIPRO_* environment is no valid Settings: {error}")


def test_hapi_settings_are_the_test_servers(default_config: Config) -> None:
    assert HAPI_TEST_CONFIG.is_file(), f"{HAPI_TEST_CONFIG} is missing"
    server = yaml.safe_load(HAPI_TEST_CONFIG.read_text())
    expected = {k: as_env_value(v) for k, v in flatten(server["hapi"]["fhir"], "hapi.fhir")}
    hapi_env = environment_of(services(default_config)["hapi"])
    actual = {k: v for k, v in hapi_env.items() if k.startswith("hapi.fhir.")}
    assert actual == expected


# ---------------------------------------------------------------------------------------------
# Checkpoint and shared volumes


def checkpoint_path(config: Config) -> str:
    paths = {
        environment_of(s).get("DIPRO_MODEL__CHECKPOINT") for s in celery_workers(config).values()
    }
    assert len(paths) == 1, f"workers disagree on the checkpoint: {paths}"
    assert None not in paths, "a worker has no DIPRO_MODEL__CHECKPOINT"
    return str(paths.pop())


def test_checkpoint_init_writes_where_the_workers_read(gpu_config: Config) -> None:
    path = checkpoint_path(gpu_config)
    init = services(gpu_config)[CHECKPOINT_INIT]
    assert environment_of(init)["DIPRO_MODEL__CHECKPOINT"] == path
    assert init.get("restart") == "no"
    init_volume = volume_holding(init, path)
    assert init_volume is not None
    assert init_volume["type"] == "volume"
    assert not init_volume.get("read_only")
    for name, worker in celery_workers(gpu_config).items():
        assert volume_holding(worker, path) == init_volume, name
        waits = (worker.get("depends_on") or {}).get(CHECKPOINT_INIT, {})
        assert waits.get("condition") == "service_completed_successfully", name


def test_checkpoint_init_runs_the_script_the_image_holds(default_config: Config) -> None:
    command = command_of(services(default_config)[CHECKPOINT_INIT])
    script = next(arg for arg in command if arg.endswith(CHECKPOINT_SCRIPT.name))
    dockerfile = AIRFLOW_DOCKERFILE.read_text()
    copy = re.search(rf"^COPY .*deploy/airflow/{CHECKPOINT_SCRIPT.name} (\S+)$", dockerfile, re.M)
    assert copy, "the Airflow image does not copy the checkpoint script"
    assert script == copy.group(1).rstrip("/") + "/" + CHECKPOINT_SCRIPT.name
    # That the build context holds the script: test_docker_images.py (every COPY source).


def run_checkpoint_script(tmp_path: Path, checkpoint: Path) -> subprocess.CompletedProcess[str]:
    """The real script, with a stub ``dipro-fhir demo`` that writes a checkpoint and logs."""
    stub_bin = tmp_path / "bin"
    stub_bin.mkdir(exist_ok=True)
    stub = stub_bin / "dipro-fhir"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        'echo "$*" >> "$STUB_LOG"\n'
        'while [ "$#" -gt 0 ]; do [ "$1" = --workdir ] && workdir=$2; shift; done\n'
        'mkdir -p "$workdir/checkpoint"\n'
        'echo \'{"name": "dipro-demo"}\' > "$workdir/checkpoint/model_card.json"\n'
        'touch "$workdir/checkpoint/weights.pt"\n'
    )
    stub.chmod(0o755)
    environ = {
        "PATH": f"{stub_bin}{os.pathsep}{os.environ['PATH']}",
        "DIPRO_MODEL__CHECKPOINT": str(checkpoint),
        "STUB_LOG": str(tmp_path / "calls.log"),
    }
    return subprocess.run(
        ["bash", str(CHECKPOINT_SCRIPT), str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )


def test_checkpoint_script_trains_the_demo_checkpoint_once(tmp_path: Path) -> None:
    checkpoint = tmp_path / "var" / "checkpoints" / "dipro"
    first = run_checkpoint_script(tmp_path, checkpoint)
    assert first.returncode == 0, first.stderr
    assert (checkpoint / "model_card.json").is_file()
    assert (checkpoint / "weights.pt").is_file()
    assert not checkpoint.with_name("dipro.partial").exists()
    second = run_checkpoint_script(tmp_path, checkpoint)
    assert second.returncode == 0, second.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == [f"--quiet demo --no-airflow --workdir {tmp_path / 'demo'}"]


def test_checkpoint_script_fills_an_empty_mount_point(tmp_path: Path) -> None:
    checkpoint = tmp_path / "dipro"
    checkpoint.mkdir()
    result = run_checkpoint_script(tmp_path, checkpoint)
    assert result.returncode == 0, result.stderr
    assert (checkpoint / "model_card.json").is_file()


def test_checkpoint_script_leaves_a_folder_without_model_card_alone(tmp_path: Path) -> None:
    checkpoint = tmp_path / "dipro"
    checkpoint.mkdir()
    (checkpoint / "weights.pt").write_text("a site's file")
    result = run_checkpoint_script(tmp_path, checkpoint)
    assert result.returncode != 0
    assert (checkpoint / "weights.pt").read_text() == "a site's file"
    assert not (tmp_path / "calls.log").exists()


def test_site_checkpoint_override_mounts_it_where_the_workers_read(
    empty_env_file: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site-checkpoint"
    config = compose_config(
        files=[COMPOSE_FILE, SITE_CHECKPOINT_FILE],
        profiles=["gpu"],
        variables={"SITE_CHECKPOINT_DIR": str(site)},
        env_file=empty_env_file,
    )
    path = checkpoint_path(config)
    for name in [CHECKPOINT_INIT, *celery_workers(config)]:
        mount = volume_holding(services(config)[name], path)
        assert mount is not None, name
        assert (mount["type"], mount["source"], mount.get("read_only")) == (
            "bind",
            str(site),
            True,
        ), name


def test_shared_volumes_are_handed_to_the_airflow_user(default_config: Config) -> None:
    all_services = services(default_config)
    init = all_services["airflow-init"]
    assert init["user"] == "0:0"
    script = " ".join(command_of(init))
    worker = all_services["airflow-worker"]
    uid = worker["user"].split(":")[0]
    writable = [
        target
        for target, mount in mount_targets(worker).items()
        if mount["type"] == "volume" and not mount.get("read_only")
    ]
    assert writable, "the worker mounts no named volume"
    dockerfile = AIRFLOW_DOCKERFILE.read_text()
    for target in writable:
        # airflow-init hands the volume to the workers' user (volumes made by an older image) ...
        assert re.search(rf'chown -R "?{uid}:0"? [^\n]*{re.escape(target)}\b', script), target
        # ... and the image makes the folder (its user owns /opt/airflow), for Docker to copy
        # into new volumes.
        made = re.findall(r"mkdir -p ((?:\\\n|[^\n&])+)", dockerfile)
        folders = {f.rstrip("/") for line in made for f in line.split() if f.startswith("/")}
        assert any(f == target or f.startswith(target + "/") for f in folders), target
