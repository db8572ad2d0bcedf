"""docker-compose.yml: no Docker engine runs here, so its content is checked instead."""

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def test_compose_defines_postgres_redis_web_and_worker(services):
    assert set(services) == {"postgres", "redis", "web", "worker", "beat"}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")


def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_web_and_worker_are_built_from_the_demo_dockerfile_that_exists(services):
    for name in ("web", "worker"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    dockerfile = (ROOT / services["web"]["build"]["dockerfile"]).read_text()
    assert "'.[demo]'" in dockerfile


def test_web_and_worker_get_database_and_broker_urls_naming_the_compose_services(services):
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379/")


def test_database_credentials_match_the_postgres_service(services):
    postgres = services["postgres"]["environment"]
    url = services["web"]["environment"]["DATABASE_URL"]
    expected = (
        f"postgres://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert url == expected


def test_web_migrates_then_serves_the_demo_admin(services):
    command = services["web"]["command"]
    assert command.index("demo/manage.py migrate") < command.index("runserver 0.0.0.0:8000")
    assert "8000:8000" in services["web"]["ports"]


def test_worker_runs_celery_on_the_demo_project(services):
    command = services["worker"]["command"].split()
    assert command[0] == "celery"
    assert command[command.index("-A") + 1] == "demoproject"
    assert "worker" in command
    assert command[command.index("--workdir") + 1] == "demo"
    assert "--beat" not in command  # beat is a service of its own
    assert (ROOT / "demo" / "demoproject" / "celery.py").is_file()


def test_beat_is_one_service_of_its_own_on_the_demo_project(services):
    command = services["beat"]["command"].split()
    assert command[:1] == ["celery"] and "beat" in command
    assert command[command.index("-A") + 1] == "demoproject"
    assert command[command.index("--workdir") + 1] == "demo"
    assert services["beat"]["depends_on"]["worker"]["condition"] == "service_healthy"


def test_web_and_worker_wait_for_healthy_servers(services):
    for name in ("web", "worker"):
        depends_on = services[name]["depends_on"]
        for server in ("postgres", "redis"):
            assert depends_on[server]["condition"] == "service_healthy"
