"""The deployment files: docker-compose.yml is a valid production stack, the systemd
units run the same commands, and the configuration reference names every variable and
config key."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.config import KEYS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "web", "orchestrator", "qcluster")
LONG_RUNNING = ("postgres", "redis", "web", "orchestrator", "qcluster")
COMPOSE_ENV = {"POSTGRES_PASSWORD": "compose-test-password", "PATH": os.environ["PATH"]}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def test_it_defines_the_production_services(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"postgres", "redis", *APP_SERVICES}


def test_the_app_services_share_the_one_image_built_from_the_dockerfile(
    compose: dict[str, Any],
) -> None:
    images = {services(compose)[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        assert services(compose)[name]["build"]["context"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_every_long_running_service_restarts_and_has_a_health_check(
    compose: dict[str, Any],
) -> None:
    for name in LONG_RUNNING:
        service = services(compose)[name]
        assert service["restart"] == "unless-stopped", name
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    # The one-shot migration must not be restarted, nor judged by the image's web check.
    migrate = services(compose)["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}


def test_the_app_starts_only_after_a_healthy_database_and_a_finished_migration(
    compose: dict[str, Any],
) -> None:
    assert services(compose)["migrate"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy"
    )
    for name in ("web", "orchestrator", "qcluster"):
        depends = services(compose)[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
    assert "migrate" in " ".join(services(compose)["migrate"]["command"])


def test_orchestrators_and_qclusters_can_be_scaled(compose: dict[str, Any]) -> None:
    for name in ("orchestrator", "qcluster"):
        service = services(compose)[name]
        # A fixed name or a host port would make a second replica fail to start.
        assert "container_name" not in service and "ports" not in service, name
        assert "ORCHESTRATOR_INSTANCE_NAME" not in service["environment"], name
        assert service["stop_signal"] == "SIGTERM", name
    # Long enough to finish a tick (http_deadline_s) or a task (Q_TIMEOUT).
    assert services(compose)["orchestrator"]["stop_grace_period"] == "60s"
    assert services(compose)["qcluster"]["stop_grace_period"] == "130s"
    assert services(compose)["orchestrator"]["command"][-1] == "run_orchestrator"
    assert services(compose)["qcluster"]["command"][-1] == "qcluster"


def test_secrets_come_from_files_or_the_environment_never_the_file(
    compose: dict[str, Any],
) -> None:
    text = COMPOSE.read_text()
    env = services(compose)["web"]["environment"]
    assert env["SECRET_KEY_FILE"] == "/run/secrets/secret_key"
    assert env["SECRETS_ENCRYPTION_KEYS_FILE"] == "/run/secrets/secrets_encryption_keys"
    assert set(compose["secrets"]) == {"secret_key", "secrets_encryption_keys"}
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert "SECRET_KEY:" not in text.replace("SECRET_KEY_FILE:", "")
    assert (ROOT / "deploy/secrets/.gitignore").read_text().split() == ["*", "!.gitignore"]


def test_the_database_and_the_queue_keep_their_data_in_volumes(compose: dict[str, Any]) -> None:
    assert "pgdata:/var/lib/postgresql/data" in services(compose)["postgres"]["volumes"]
    assert "redisdata:/data" in services(compose)["redis"]["volumes"]
    assert set(compose["volumes"]) == {"pgdata", "redisdata"}


def test_docker_compose_config_validates_the_file(tmp_path: Path) -> None:
    if shutil.which("docker") and _runs(["docker", "compose", "version"]):
        command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        command = ["docker-compose"]
    else:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "--project-directory", str(ROOT), "config", "--quiet"],
        env=COMPOSE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _runs(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_the_systemd_units_run_the_same_commands() -> None:
    units = {path.name: path for path in (ROOT / "deploy/systemd").glob("*.service")}
    expected = {
        "mission-control-web.service": "gunicorn mission_control.wsgi:application",
        "mission-control-orchestrator@.service": "manage.py run_orchestrator",
        "mission-control-qcluster@.service": "manage.py qcluster",
        "mission-control-migrate.service": "manage.py migrate --noinput",
    }
    assert set(units) == set(expected)
    for name, command in expected.items():
        unit = ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read_string(units[name].read_text())
        exec_lines = re.findall(r"^ExecStart=(.*(?:\\\n.*)*)", units[name].read_text(), re.M)
        assert any(command in line for line in exec_lines), name
        assert unit["Service"]["EnvironmentFile"] == "/etc/mission-control/env", name
        if name != "mission-control-migrate.service":
            assert unit["Service"]["Restart"] == "always", name
            assert unit["Service"]["KillSignal"] == "SIGTERM", name


def test_systemd_signals_the_orchestrator_supervisor_only() -> None:
    # With ORCHESTRATOR_PROCESSES > 1 the main process passes SIGTERM on to the engine
    # processes; systemd's default (the whole group) would signal them twice, and the
    # second signal stops them mid-tick.
    unit = ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy/systemd/mission-control-orchestrator@.service").read_text())
    assert unit["Service"]["KillMode"] == "mixed"


# The configuration reference


def _settings_variables() -> set[str]:
    source = (ROOT / "mission_control/settings.py").read_text()
    names = set(re.findall(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]+)["']""", source))
    names |= set(re.findall(r"""_secret\(\s*["']([A-Z][A-Z0-9_]+)["']""", source))
    return names


def test_the_configuration_reference_names_every_environment_variable() -> None:
    reference = (ROOT / "docs/configuration.md").read_text()
    variables = _settings_variables()
    assert {"DATABASE_URL", "SECRET_KEY", "REDIS_URL"} <= variables
    missing = sorted(v for v in variables if f"`{v}`" not in reference)
    assert not missing, f"docs/configuration.md does not describe: {missing}"


def test_the_configuration_reference_names_every_config_key_with_its_default() -> None:
    reference = (ROOT / "docs/configuration.md").read_text()
    missing = []
    for key in KEYS.values():
        row = next((line for line in reference.splitlines() if f"| `{key.key}` |" in line), "")
        default = str(key.default).lower() if key.type is bool else f"{key.default:g}"
        if key.type is str:
            default = str(key.default)
        if not row or f"| {default} |" not in row.replace("`", ""):
            missing.append(f"{key.key} (default {default})")
    assert not missing, f"docs/configuration.md lacks or misstates: {missing}"
