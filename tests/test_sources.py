"""Readers (datapipe.sources): keyed records through reparse, prune, error rows,
reprocess, select and Celery chunks; bad input named by its place."""

import gzip
import json

import pytest

import tests.io_pipes  # noqa: F401  (registers io.import, as the workers do)
from datapipe import Pipe, get_session, pipeline, reprocess
from datapipe.exceptions import SourceError, UnreadableRecord
from datapipe.models import PipelineError, PipelineRun, PipelineTrack
from datapipe.sources import Record, Unreadable, read_csv, read_json, read_jsonl
from tests.testapp.models import ResultItem

pytestmark = pytest.mark.django_db(transaction=True)


def write_csv(path, rows, header="code,n"):
    path.write_text("\n".join([header, *(f"{code},{n}" for code, n in rows)]) + "\n")
    return str(path)


def outputs():
    """``{code: (number, pk)}`` of the ResultItems."""
    return {r.unique_key: (r.number, r.pk) for r in ResultItem.objects.all()}


def import_rows(url, backend="local", queue=None, **run_options):
    session = get_session(progress=False)
    items = read_csv(url, key="code")
    if backend == "local":
        return PipelineRun.objects.get(pk=session.run(items, "io.import", **run_options).run_id)
    handle = session.run_in_celery(items, "io.import", celery_chunksize=2, queue=queue,
                                   **run_options)
    return handle.wait(timeout=60)


# Reading -------------------------------------------------------------------------------


def test_csv_rows_are_records_with_their_key_and_line(tmp_path):
    url = write_csv(tmp_path / "a.csv", [("LHR", 1), ("CDG", 2)])
    records = list(read_csv(url, key="code"))
    assert records == [{"code": "LHR", "n": "1"}, {"code": "CDG", "n": "2"}]
    assert [(r.key, r.line) for r in records] == [("LHR", 2), ("CDG", 3)]
    assert all(type(r) is Record for r in records)
    assert [r.key for r in read_csv(url, key=lambda row: row["code"].lower())] == ["lhr", "cdg"]
    assert [r.key for r in read_csv(url)] == [None, None]


def test_jsonl_json_and_compressed_files_are_read_as_records(tmp_path):
    lines = tmp_path / "a.jsonl.gz"
    with gzip.open(lines, "wt") as file:
        file.write('{"code": "A", "n": 1}\n\n{"code": "B", "n": 2}\n')
    assert [(r.key, r["n"], r.line) for r in read_jsonl(str(lines), key="code")] == [
        ("A", 1, 1), ("B", 2, 3)]
    array = tmp_path / "a.json"
    array.write_text('[\n {"code": "A", "n": 1},\n {"code": "B",\n  "n": 2}\n]')
    assert [(r.key, r.line) for r in read_json(str(array), key="code")] == [("A", 2), ("B", 3)]
    (tmp_path / "big.json").write_text(json.dumps([{"code": str(i)} for i in range(30000)]))
    assert sum(1 for _ in read_json(str(tmp_path / "big.json"), key="code")) == 30000


def test_lines_that_cannot_be_read_are_unreadable_items_naming_their_line(tmp_path):
    csv_url = str(tmp_path / "a.csv")
    (tmp_path / "a.csv").write_text("code,n\nA,1\nB,2,3\n,4\nC,5\n")
    items = list(read_csv(csv_url, key="code"))
    assert [type(i).__name__ for i in items] == ["Record", "Unreadable", "Unreadable", "Record"]
    assert "a.csv, line 3: 3 fields where the header has 2" in str(items[1].error())
    assert "line 4: an empty key" in str(items[2].error())
    (tmp_path / "a.jsonl").write_text('{"code": "A"}\n{"code": \n[1]\n{"n": 1}\n')
    problems = [str(i.error()) for i in read_jsonl(str(tmp_path / "a.jsonl"), key="code")
                if isinstance(i, Unreadable)]
    assert [p.split(": ", 1)[0][-6:] for p in problems] == ["line 2", "line 3", "line 4"]
    assert "no field 'code'" in problems[2]
    with pytest.raises(UnreadableRecord):
        items[1]["code"]


def test_files_that_cannot_be_read_are_errors_naming_the_place(tmp_path, http_files):
    folder, base = http_files
    with pytest.raises(SourceError, match="unknown URL scheme 'nope'"):
        read_csv("nope://bucket/a.csv")
    with pytest.raises(SourceError, match="missing.csv: no such file"):
        list(read_csv(str(tmp_path / "missing.csv")))
    with pytest.raises(SourceError, match=f"{base}/gone.csv: no such file"):
        list(read_csv(f"{base}/gone.csv"))
    with pytest.raises(SourceError, match="status/500: cannot be read.*500"):
        list(read_csv(f"{base}/status/500"))
    (tmp_path / "a.csv").write_text("name,n\nA,1\n")
    with pytest.raises(SourceError, match="the header has no field 'code'"):
        list(read_csv(str(tmp_path / "a.csv"), key="code"))
    (tmp_path / "b.json").write_text('[{"code": "A"}, {"code": ]')
    with pytest.raises(SourceError, match="b.json, line 1: malformed JSON"):
        list(read_json(str(tmp_path / "b.json"), key="code"))


def test_csv_is_read_over_http(http_files):
    folder, base = http_files
    write_csv(folder / "a.csv", [("A", 1), ("B", 2)])
    assert [r.key for r in read_csv(f"{base}/a.csv", key="code")] == ["A", "B"]


# Reparse and prune, locally and through Celery -------------------------------------------


def test_a_changed_file_imported_again_replaces_the_changed_rows_outputs(tmp_path, runner):
    first = write_csv(tmp_path / "a.csv", [("A", 1), ("B", 2), ("C", 3)])
    assert import_rows(first, runner.backend, runner.queue).status == "done"
    before = outputs()
    changed = write_csv(tmp_path / "b.csv", [("A", 1), ("B", 20), ("C", 3)])
    assert import_rows(changed, runner.backend, runner.queue).status == "done"
    after = outputs()
    assert {code: n for code, (n, _) in after.items()} == {"A": 1, "B": 20, "C": 3}
    assert after["B"][1] != before["B"][1]
    assert PipelineTrack.objects.filter(pipeline_name="io.import").count() == 3
    assert set(PipelineTrack.objects.values_list("item_id", flat=True)) == {"A", "B", "C"}


def test_prune_deletes_the_outputs_of_keys_absent_from_the_new_file(tmp_path, runner):
    import_rows(write_csv(tmp_path / "a.csv", [("A", 1), ("B", 2), ("C", 3)]),
                runner.backend, runner.queue)
    smaller = write_csv(tmp_path / "b.csv", [("A", 1), ("C", 30)])
    import_rows(smaller, runner.backend, runner.queue)
    assert set(outputs()) == {"A", "B", "C"}  # without prune, B's outputs stay
    run = import_rows(smaller, runner.backend, runner.queue, prune=True)
    assert run.status == "done"
    assert {code: n for code, (n, _) in outputs().items()} == {"A": 1, "C": 30}
    assert set(PipelineTrack.objects.values_list("item_id", flat=True)) == {"A", "C"}


def test_prune_keeps_the_outputs_of_records_that_failed_in_the_run(tmp_path):
    import_rows(write_csv(tmp_path / "a.csv", [("A", 1), ("B", 2)]))
    run = import_rows(write_csv(tmp_path / "b.csv", [("B", "fail")]), prune=True)
    assert run.errored == 1
    assert {code: n for code, (n, _) in outputs().items()} == {"B": 2}


def test_prune_needs_every_item():
    with pytest.raises(ValueError, match="prune=True is a full refresh"):
        get_session().run([], "io.import", prune=True, select="new")


def test_a_duplicate_key_in_one_file_the_last_record_wins(tmp_path):
    url = write_csv(tmp_path / "a.csv", [("A", 1), ("B", 2), ("A", 3)])
    report = get_session(progress=False, chunksize=2).run(read_csv(url, key="code"),
                                                          "io.import")
    assert report.succeeded == 3
    assert {code: n for code, (n, _) in outputs().items()} == {"A": 3, "B": 2}


# Errors, reprocess, select -------------------------------------------------------------


def test_error_rows_name_the_record_by_its_key_or_its_line(tmp_path):
    (tmp_path / "a.csv").write_text("code,n\nA,fail\nB,2,2\nC,3\n")
    run = import_rows(str(tmp_path / "a.csv"))
    assert (run.succeeded, run.errored) == (1, 2)
    keyed = PipelineError.objects.get(error_type="ValueError")
    assert (keyed.item_content_type_id, keyed.item_id, keyed.item_key) == (None, "A", "k:A")
    assert keyed.item_value == {"code": "A", "n": "fail"}
    unreadable = PipelineError.objects.get(error_type="datapipe.exceptions.UnreadableRecord")
    assert "a.csv, line 3: 3 fields where the header has 2" in unreadable.error_message


def test_keyed_records_are_reprocessed_from_their_error_rows(tmp_path, isolated_registry):
    @pipeline("io.flaky")
    class Flaky(Pipe):
        def process(self):
            row = super().process()
            if Flaky.broken:
                raise ValueError("broken")
            self.add_to_save(ResultItem(number=float(row["n"]), unique_key=row["code"]))
            return row

    Flaky.broken = True
    get_session(progress=False).run(read_csv(write_csv(tmp_path / "a.csv", [("A", 1)]),
                                             key="code"), "io.flaky")
    Flaky.broken = False
    result = reprocess(PipelineError.objects.all())
    assert (result.rows, result.resolved, result.missing) == (1, 1, 0)
    assert PipelineTrack.objects.get(pipeline_name="io.flaky").item_id == "A"


def test_select_new_and_failed_see_keyed_records(tmp_path):
    import_rows(write_csv(tmp_path / "a.csv", [("A", 1), ("B", "fail")]))
    url = write_csv(tmp_path / "b.csv", [("A", 1), ("B", 2), ("C", 3)])
    assert import_rows(url, select="new").processed == 1  # C
    assert import_rows(url, select="failed").processed == 1  # B, now fixed
    assert set(outputs()) == {"A", "B", "C"}


def test_keyed_records_travel_to_celery_with_their_key():
    from datapipe.distributed.chunks import decode_chunk, encode_chunks

    items = [Record({"code": "A"}, key="A"), Record({"code": "B"}, key=7),
             Unreadable("f.csv", 3, "bad")]
    payloads = list(encode_chunks(items, 2))
    assert payloads[0] == {"records": [["A", {"code": "A"}], [7, {"code": "B"}]]}
    decoded = [item for payload in payloads for item in decode_chunk(payload, "default")]
    assert [getattr(item, "key", None) for item in decoded[:2]] == ["A", 7]
    assert str(decoded[2].error()) == "f.csv, line 3: bad"
