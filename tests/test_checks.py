"""System checks of the project's settings: DATAPIPE keys, SQLite with a Celery broker."""

from django.core import checks
from django.db import connection
from django.test import override_settings


def issues(check_id: str) -> list:
    return [issue for issue in checks.run_checks() if issue.id == check_id]


@override_settings(DATAPIPE={"CHUNK_SIZE": 10, "DEBUG": False})
def test_an_unknown_datapipe_key_is_reported_with_its_close_match():
    warning, = issues("datapipe.W001")

    assert warning.level == checks.WARNING
    assert "'CHUNK_SIZE'" in warning.msg and "no effect" in warning.msg
    assert warning.hint == "Did you mean 'CHUNKSIZE'?"


@override_settings(DATAPIPE={"COLOUR": "red"})
def test_an_unknown_key_without_a_close_match_lists_the_keys():
    warning, = issues("datapipe.W001")

    assert "'COLOUR'" in warning.msg and "CHUNKSIZE" in warning.hint


@override_settings(DATAPIPE={"CHUNKSIZE": 10, "STALE_AFTER": 60})
def test_known_keys_pass():
    assert issues("datapipe.W001") == [] and issues("datapipe.E003") == []


@override_settings(DATAPIPE=[("CHUNKSIZE", 10)])
def test_a_datapipe_setting_that_is_not_a_dict_is_an_error():
    error, = issues("datapipe.E003")

    assert "must be a dict, not list" in error.msg


@override_settings(CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
def test_sqlite_with_a_broker_is_reported_and_postgresql_is_not():
    found = issues("datapipe.W002")

    if connection.vendor == "sqlite":
        warning, = found
        assert "SQLite" in warning.msg and "PostgreSQL" in warning.hint
    else:
        assert found == []


@override_settings(CELERY_BROKER_URL="")
def test_sqlite_without_a_broker_passes():
    assert issues("datapipe.W002") == []
