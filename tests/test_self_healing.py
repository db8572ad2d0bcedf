"""Runs that finish by themselves: faults healed by the sweep, with no person acting.

Real Redis, PostgreSQL and prefork workers. The workers run the beat scheduler (``-B``)
with the schedule that ``datapipe.celery.configure(app)`` sets up, on short intervals
(``STALE_AFTER`` 2 s, ``SWEEP_EVERY`` 1 s). Each test asserts every item's output
exactly once and the run ``done``, and records its figures (with the time to heal) in
``$DATAPIPE_TEST_OUTPUT/celery-faults.json`` (see tests/test_celery_faults.py).
"""

import subprocess
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import redis
from django.db import connection
from django.urls import reverse

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines here too)
from datapipe import DispatchFailed, get_session
from datapipe.distributed.dispatch import resend
from datapipe.models import PipelineError, PipelineRun
from tests.test_celery_faults import figures, make_items
from tests.testapp.models import Note, ResultItem, SourceItem
from tests.workers import broker_url, require_postgres_control, start_postgres, stop_postgres

pytestmark = pytest.mark.slow

WAIT = 90
HEALING = {"STALE_AFTER": 2, "SWEEP_EVERY": 1}
#: Seconds PostgreSQL is stopped mid-run (the chunks' retries cover about five minutes).
OUTAGE = 45


@pytest.fixture
def healing_worker(start_worker, celery_queue):
    """A factory of workers on the test's queue, with the sweep every second."""
    return lambda: start_worker(celery_queue, beat=True, settings=HEALING)


def outputs_per_source():
    return Counter(ResultItem.objects.exclude(source=None).values_list("source_id", flat=True))


def wait_for(condition, timeout=60, what="the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def send(items, name, queue, chunksize=5, **context):
    return get_session(context=context).run_in_celery(
        SourceItem.objects.filter(pk__in=[i.pk for i in items]), name,
        celery_chunksize=chunksize, queue=queue)


def assert_exactly_once(items, run):
    assert run.status == "done", run.message
    assert outputs_per_source() == Counter(item.pk for item in items)
    assert set(run.chunks.values_list("status", flat=True)) == {"done"}
    assert run.processed == len(items)


def test_messages_the_broker_lost_are_sent_again(healing_worker, celery_queue):
    items = make_items(["ok"] * 60)
    worker = healing_worker()
    handle = send(items, "dist.slow", celery_queue, sleep=0.05)
    wait_for(lambda: handle.run.chunks_done >= 2, what="two chunks done")

    redis.Redis.from_url(broker_url()).flushall()  # a restart without persistence
    lost_at = time.monotonic()
    run = handle.wait(timeout=WAIT)

    assert_exactly_once(items, run)
    assert run.chunks.filter(resends__gte=1).exists()
    figures("broker restarted without persistence mid-run", items, run,
            heal_seconds=round(time.monotonic() - lost_at, 1), worker=worker.queue)


def test_chunks_whose_messages_never_reached_the_broker_are_sent(healing_worker,
                                                                   celery_queue):
    items = make_items(["ok"] * 40)
    handle = send(items, "flow", celery_queue, chunksize=2)
    # As if the caller had been killed before sending: no message left for the chunks.
    redis.Redis.from_url(broker_url()).delete(celery_queue)
    assert resend(handle.id) == 0  # nothing failed or known lost: a plain resend sends none
    started = time.monotonic()

    healing_worker()
    run = handle.wait(timeout=WAIT)

    assert_exactly_once(items, run)
    assert run.chunks.filter(resends=1).count() == 20
    figures("caller killed before its messages were sent", items, run,
            heal_seconds=round(time.monotonic() - started, 1))


def test_a_worker_killed_inside_finish_run_is_finished_by_the_sweep(healing_worker,
                                                                    celery_queue):
    items = make_items(["ok"] * 10)
    worker = healing_worker()
    handle = send(items, "dist.finish_slow", celery_queue, finish_sleep=60)
    wait_for(lambda: ResultItem.objects.filter(unique_key=f"finish-{handle.id}").exists(),
             what="finish_run to start")

    worker.kill()
    killed_at = time.monotonic()
    assert handle.run.status == "running"
    healing_worker()
    run = handle.wait(timeout=WAIT)

    assert_exactly_once(items, run)
    assert ResultItem.objects.get(unique_key=f"finish-{run.pk}").number == 1  # ran again
    figures("worker killed inside finish_run", items, run,
            heal_seconds=round(time.monotonic() - killed_at, 1))


def test_a_worker_killed_inside_a_trigger_run_has_its_trigger_run_again(healing_worker,
                                                                        celery_queue):
    items = make_items(["ok"] * 12)
    worker = healing_worker()
    handle = send(items, "dist.trig_source", celery_queue, chunksize=4, trigger_sleep=0.3)
    wait_for(lambda: PipelineRun.objects.filter(pipeline_name="dist.trig_slow",
                                                status="running").exists(),
             what="a trigger run")
    time.sleep(0.4)  # into its items

    worker.kill()
    killed_at = time.monotonic()
    healing_worker()
    run = handle.wait(timeout=WAIT)

    assert_exactly_once(items, run)
    assert Counter(Note.objects.values_list("result_id", flat=True)) == Counter(
        ResultItem.objects.exclude(source=None).values_list("pk", flat=True))
    killed_runs = PipelineRun.objects.filter(pipeline_name="dist.trig_slow", status="failed")
    assert killed_runs.exists()
    assert all(r.message.startswith("abandoned") for r in killed_runs)
    figures("worker killed inside a trigger run", items, run,
            heal_seconds=round(time.monotonic() - killed_at, 1),
            trigger_outputs=Note.objects.count())


def test_backends_terminated_during_trigger_runs_are_retried(healing_worker, celery_queue):
    items = make_items(["ok"] * 12)
    healing_worker()
    handle = send(items, "dist.trig_source", celery_queue, chunksize=4, trigger_sleep=0.2)
    wait_for(lambda: PipelineRun.objects.filter(pipeline_name="dist.trig_slow",
                                                status="running").exists(),
             what="a trigger run")
    time.sleep(0.3)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        killed = cursor.rowcount
    run = handle.wait(timeout=WAIT)

    assert_exactly_once(items, run)
    assert Counter(Note.objects.values_list("result_id", flat=True)) == Counter(
        ResultItem.objects.exclude(source=None).values_list("pk", flat=True))
    assert not PipelineError.objects.exists()
    figures("backends terminated during trigger runs", items, run, backends_killed=killed)


def _redis_port() -> int:
    return urlsplit(broker_url()).port


def _stop_redis():
    redis.Redis.from_url(broker_url()).shutdown(nosave=True)


def _start_redis():
    subprocess.run(["redis-server", "--port", str(_redis_port()), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--daemonize", "yes"], check=True)
    wait_for(lambda: _answers(), timeout=10, what="Redis")


def _answers():
    try:
        return redis.Redis.from_url(broker_url()).ping()
    except redis.RedisError:
        return False


def test_a_broker_down_at_dispatch_fails_the_run_which_resend_finishes(
    healing_worker, celery_queue, admin_client,
):
    items = make_items(["ok", "error", "ok", "ok"])
    _stop_redis()
    try:
        with pytest.raises(DispatchFailed, match=r"Run (\d+) of 'flow'.*resend") as raised:
            send(items, "flow", celery_queue, chunksize=2)
        run = PipelineRun.objects.get(pk=raised.value.run_id)
        assert (run.status, run.message[:15]) == ("failed", "Dispatch failed")
        assert set(run.chunks.values_list("status", flat=True)) == {"lost"}
        # the admin's "Reprocess in Celery" says so instead of answering 500
        get_session().run(SourceItem.objects.filter(behaviour="error"), "flow")
        error = PipelineError.objects.filter(pipeline_name="flow")
        response = admin_client.post(
            reverse("admin:datapipe_pipelineerror_changelist") + "?show=rows",
            {"action": "reprocess_in_celery", "_selected_action": [error.get().pk]},
            follow=True)
        assert response.status_code == 200
        assert "Dispatch failed" in response.content.decode()
    finally:
        _start_redis()

    healing_worker()
    assert resend(run.pk) == 2
    run = PipelineRun.objects.get(pk=run.pk)
    deadline = time.monotonic() + WAIT
    while run.status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        run.refresh_from_db()
    assert (run.status, run.processed, run.errored) == ("done", 4, 1)
    assert outputs_per_source() == Counter(i.pk for i in items if i.behaviour == "ok")


def test_a_postgres_outage_mid_run_heals_and_wait_survives_it(healing_worker, celery_queue):
    require_postgres_control()
    items = make_items(["ok"] * 40)
    healing_worker()
    handle = send(items, "dist.slow", celery_queue, sleep=0.1)
    wait_for(lambda: handle.run.chunks_done >= 1, what="a chunk done")
    outcome = {}

    def waiter():
        try:
            outcome["run"] = handle.wait(timeout=WAIT)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connection.close()

    waiting = threading.Thread(target=waiter)
    waiting.start()
    stop_postgres()
    stopped_at = time.monotonic()
    time.sleep(OUTAGE)
    start_postgres()
    waiting.join(timeout=WAIT + 10)

    assert "error" not in outcome, outcome.get("error")
    run = outcome["run"]
    run.refresh_from_db()
    assert_exactly_once(items, run)
    figures(f"PostgreSQL stopped {OUTAGE} s mid-run", items, run,
            heal_seconds=round(time.monotonic() - stopped_at, 1))
