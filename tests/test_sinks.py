"""Sinks (datapipe.sinks): results written after the commit, whole or not at all, to
local files, S3 (moto's server) and through Celery; the locations on the run record."""

import csv
import json
import os

import pytest
from django.db import transaction

import tests.io_pipes  # noqa: F401  (registers io.export, as the workers do)
from datapipe import Pipe, PipeError, get_session, pipeline
from datapipe.models import PipelineRun
from datapipe.sinks import CSV, JSONLines
from datapipe.sources import read_csv
from tests.io_pipes import EXPORTS
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db(transaction=True)


def rows_csv(path, rows):
    path.write_text("code,n\n" + "".join(f"{code},{n}\n" for code, n in rows))
    return str(path)


def exporter(location, fail_on=None, **sink_options):
    """Register ``io.sink``: io.import's rows as results, into a JSONLines or CSV sink."""
    sink_class = CSV if location.endswith(".csv") else JSONLines

    @pipeline("io.sink")
    class Export(Pipe):
        sink = sink_class(location, **sink_options)

        def process(self):
            row = super().process()
            if row["code"] == fail_on:
                raise PipeError("stop")
            self.add_to_save(ResultItem(number=float(row["n"]), unique_key=row["code"]))
            return {"code": row["code"], "n": float(row["n"])}

    return Export


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_results_are_written_after_the_commit_and_the_location_recorded(tmp_path,
                                                                        isolated_registry):
    exporter(str(tmp_path / "out" / "{pipeline}-{run_id}-{date}.jsonl"))
    url = rows_csv(tmp_path / "a.csv", [("A", 1), ("B", 2)])
    report = get_session(progress=False).run(read_csv(url, key="code"), "io.sink")
    run = PipelineRun.objects.get(pk=report.run_id)
    location = str(tmp_path / "out" / f"io.sink-{run.pk}-{run.started_at.date()}.jsonl")
    assert run.status == "done" and run.locations == [location]
    with open(location) as file:
        assert [json.loads(line) for line in file] == [{"code": "A", "n": 1.0},
                                                       {"code": "B", "n": 2.0}]
    assert files_in(tmp_path / "out") == [os.path.basename(location)]  # no temporary left


def test_csv_sinks_write_a_header_and_models_as_their_field_values(tmp_path,
                                                                   isolated_registry):
    @pipeline("io.models")
    class Models(Pipe):
        sink = CSV(str(tmp_path / "items.csv.gz"))

    items = [SourceItem.objects.create(number=n) for n in (1, 2)]
    get_session(progress=False).run(SourceItem.objects.all(), "io.models")
    import gzip

    with gzip.open(tmp_path / "items.csv.gz", "rt") as file:
        assert list(csv.DictReader(file)) == [
            {"id": str(item.pk), "number": str(item.number), "behaviour": "ok", "touched": "0"}
            for item in items]


def test_a_run_rolled_back_or_dry_writes_no_file(tmp_path, isolated_registry):
    exporter(str(tmp_path / "out" / "{run_id}.jsonl"), fail_on="B")
    url = rows_csv(tmp_path / "a.csv", [("A", 1), ("B", 2)])
    with pytest.raises(PipeError):
        get_session(progress=False).run(read_csv(url, key="code"), "io.sink")
    ok = rows_csv(tmp_path / "b.csv", [("A", 1)])
    get_session(progress=False).run(read_csv(ok, key="code"), "io.sink", dry_run=True)
    with pytest.raises(RuntimeError), transaction.atomic():
        get_session(progress=False).run(read_csv(ok, key="code"), "io.sink")
        raise RuntimeError("the caller rolls back")
    assert files_in(tmp_path / "out") == []
    assert not PipelineRun.objects.exclude(locations=[]).exists()


def test_a_run_inside_a_transaction_writes_when_it_commits(tmp_path, isolated_registry):
    exporter(str(tmp_path / "out" / "{run_id}.jsonl"))
    url = rows_csv(tmp_path / "a.csv", [("A", 1)])
    with transaction.atomic():
        report = get_session(progress=False).run(read_csv(url, key="code"), "io.sink")
        assert files_in(tmp_path / "out") == []
    assert files_in(tmp_path / "out") == [f"{report.run_id}.jsonl"]


def test_a_failed_write_fails_the_run_not_its_items_and_leaves_no_file(tmp_path,
                                                                      isolated_registry):
    (tmp_path / "taken").write_text("a file where the sink wants a folder")
    exporter(str(tmp_path / "taken" / "{run_id}.jsonl"))
    url = rows_csv(tmp_path / "a.csv", [("A", 1), ("B", 2)])
    report = get_session(progress=False).run(read_csv(url, key="code"), "io.sink")
    run = PipelineRun.objects.get(pk=report.run_id)
    assert run.status == "failed" and (run.succeeded, run.errored) == (2, 0)
    assert run.message.startswith(f"sink {tmp_path}/taken/{run.pk}.jsonl: cannot be written")
    assert ResultItem.objects.count() == 2 and run.locations == []


def test_a_result_a_sink_cannot_write_fails_the_run_and_leaves_no_partial_file(
        tmp_path, isolated_registry):
    @pipeline("io.bad")
    class Bad(Pipe):
        sink = JSONLines(str(tmp_path / "bad.jsonl"))

        def process(self):
            return {"ok": 1} if self.item < 3 else object()

    report = get_session(progress=False).run([1, 2, 3], "io.bad")
    assert "result 3: a sink writes dicts and model instances, not object" in report.message
    assert files_in(tmp_path) == []


def test_an_s3_round_trip_through_motos_server(tmp_path, isolated_registry, s3_server):
    import boto3
    import s3fs

    boto3.client("s3", endpoint_url=s3_server["endpoint_url"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket="datapipe-io")
    fs = s3fs.S3FileSystem(**s3_server)
    fs.pipe("datapipe-io/in/airports.csv", b"code,n\nA,1\nB,2\n")
    exporter("s3://datapipe-io/out/{pipeline}-{run_id}.jsonl", storage_options=s3_server)
    records = read_csv("s3://datapipe-io/in/airports.csv", key="code",
                       storage_options=s3_server)
    report = get_session(progress=False).run(records, "io.sink")
    run = PipelineRun.objects.get(pk=report.run_id)
    assert run.locations == [f"s3://datapipe-io/out/io.sink-{run.pk}.jsonl"]
    lines = fs.cat(run.locations[0]).decode().splitlines()
    assert [json.loads(line)["code"] for line in lines] == ["A", "B"]
    assert fs.ls("datapipe-io/out") == [f"datapipe-io/out/io.sink-{run.pk}.jsonl"]


@pytest.mark.postgresql
def test_a_celery_run_writes_one_file_after_its_last_chunk(tmp_path, celery_worker):
    url = rows_csv(tmp_path / "a.csv", [(code, n) for n, code in enumerate("ABCDE")])
    handle = get_session(progress=False).run_in_celery(
        read_csv(url, key="code"), "io.export", celery_chunksize=2, queue=celery_worker.queue)
    run = handle.wait(timeout=60)
    location = os.path.join(EXPORTS, f"io.export-{run.pk}.jsonl")
    assert run.status == "done" and run.locations == [location]
    with open(location) as file:
        assert [json.loads(line)["code"] for line in file] == list("ABCDE")
    assert not run.chunks.exclude(results=None).exists()
    os.remove(location)
