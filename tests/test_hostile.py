"""Hostile input loses nothing: dirty text, hostile exceptions, bad outputs, secrets in
pages, forged messages, options that do not exist (DESIGN.md section 11).

Each case asserts which items have error rows and what they hold, which outputs exist,
the run's final status and its message. The same cases run on PostgreSQL and SQLite.
"""

import pytest
from django.db import connection
from django.test import override_settings

from datapipe import ConnectionClosed, Pipe, PipeError, get_session, pipeline
from datapipe.models import PipelineChunk, PipelineError, PipelineRun
from datapipe.tasks import run as run_task
from tests.testapp.models import Note, ResultItem, SourceItem

pytestmark = pytest.mark.django_db

SURROGATE = b"caf\xe9".decode("utf-8", "surrogateescape")  # "caf\udce9"
SECRET = "s3" + "cr3t"  # never spelled whole here: stored pages show source lines
HIDDEN = "*" * 20  # Django's cleansed_substitute
NOT_A_NUMBER = "Field 'number' expected a number but got 'not-a-number'."
CIRCULAR = []
CIRCULAR.append(CIRCULAR)


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no message")


class NotText(Exception):
    def __str__(self):
        return 42


class BadArgs(Exception):
    @property
    def args(self):
        raise RuntimeError("no args")


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


class Uncomparable(Exception):
    __hash__ = Exception.__hash__

    def __eq__(self, other):
        raise RuntimeError("no comparison")


class RawRepr:  # its repr holds what databases refuse
    def __repr__(self):
        return f"raw\x00{SURROGATE}"


def make_items(*behaviours):
    return SourceItem.objects.bulk_create([SourceItem(behaviour=b) for b in behaviours])


def register(process):  # as the pipeline "hostile"
    pipeline("hostile")(type("Hostile", (Pipe,), {"process": process}))


def run_hostile(process, items, **options):
    register(process)
    return get_session(**options).run(items, "hostile")


def raising(**raised):
    """A process that buffers one ResultItem per item, then raises ``raised[behaviour]``."""

    def process(self):
        self.add_to_save(ResultItem(source=self.item))
        if self.item.behaviour in raised:
            raise raised[self.item.behaviour]
        return self.item

    return process


def errors():
    """The error rows' (type, message) by item pk."""
    return {r.item_id: (r.error_type, r.error_message) for r in PipelineError.objects.all()}


def outputs():
    return sorted(ResultItem.objects.exclude(source=None).values_list("source_id", flat=True))


def run_record(report):  # the run's record, as stored
    return PipelineRun.objects.get(pk=report.run_id)


# Text that databases refuse is stored escaped -------------------------------------------


@pytest.mark.parametrize("text, stored", [("bad\x00byte", "bad\\x00byte"),
                                          (SURROGATE, "caf\\udce9")], ids=["NUL", "surrogate"])
def test_unstorable_text_in_a_message_is_stored_escaped_with_the_runs_other_rows(
        isolated_registry, text, stored):
    dirty, plain, ok = make_items("dirty", "plain", "ok")
    report = run_hostile(raising(dirty=ValueError(text), plain=ValueError("plain")),
                         SourceItem.objects.all())
    assert errors() == {str(dirty.pk): ("ValueError", stored),
                        str(plain.pk): ("ValueError", "plain")}
    row = PipelineError.objects.get(item_id=dirty.pk)
    assert (row.error_args, stored in row.traceback_html) == ([stored], True)
    assert outputs() == [ok.pk]
    assert (run_record(report).status, report.errored) == ("done", 2)


def test_unstorable_text_in_a_json_item_value_is_escaped_keys_too(isolated_registry):
    def process(self):
        if "name" in self.item:
            raise ValueError("no")

    report = run_hostile(process, [{"name": "a\x00b", SURROGATE: 1}, {"ok": 1}])
    row = PipelineError.objects.get()
    assert (row.item_value, row.item_repr) == (
        {"name": "a\\x00b", "caf\\udce9": 1}, "{'name': 'a\\x00b', 'caf\\udce9': 1}")
    assert run_record(report).status == "done"


def test_unstorable_text_in_an_items_repr_and_a_locals_repr_is_escaped(isolated_registry):
    def process(self):
        local = RawRepr()  # noqa: F841  (shown in the page)
        raise ValueError("no")

    report = run_hostile(process, [RawRepr()])
    row = PipelineError.objects.get()
    assert (row.item_repr, row.item_value) == ("raw\\x00caf\\udce9", None)
    assert "raw\\x00caf\\udce9" in row.traceback_html  # the local's repr
    assert run_record(report).status == "done"


def test_unstorable_text_inside_exception_args_is_escaped(isolated_registry):
    (item,) = make_items("dirty")
    run_hostile(raising(dirty=ValueError({"k\x00": ["v" + SURROGATE]}, 2)),
                SourceItem.objects.all())
    assert PipelineError.objects.get().error_args == [{"k\\x00": ["vcaf\\udce9"]}, 2]


def test_nan_and_infinity_in_values_and_args_are_stored_as_text(isolated_registry):
    def process(self):
        raise ValueError(float("inf"))

    report = run_hostile(process, [{"x": float("nan")}])
    row = PipelineError.objects.get()
    assert (row.item_value, row.error_args, row.error_message) == ({"x": "nan"}, ["inf"], "inf")
    assert run_record(report).status == "done"


@pytest.mark.django_db(transaction=True)
def test_a_pipe_error_with_a_nul_fails_the_run_and_committed_error_rows_stay(isolated_registry):
    error, ok, stop = make_items("error", "ok", "stop")
    with pytest.raises(PipeError):
        run_hostile(raising(error=ValueError("early"), stop=PipeError("stop\x00now")),
                    SourceItem.objects.all(), atomic=False, chunksize=2)
    assert errors() == {str(error.pk): ("ValueError", "early")}  # written with its batch
    assert outputs() == [ok.pk]
    record = PipelineRun.objects.get()
    assert (record.status, record.message) == ("failed", "PipeError: stop\\x00now")


# Stored text is bounded --------------------------------------------------------------------


def test_a_one_megabyte_message_is_cut_in_message_args_and_page(isolated_registry):
    make_items("huge")
    report = run_hostile(raising(huge=ValueError("x" * 2**20)), SourceItem.objects.all())
    row = PipelineError.objects.get()
    cut = "x" * 10_000 + "… [cut at 10000 of 1048576 characters]"
    assert (row.error_message, row.error_args) == (cut, [cut])
    page = row.traceback_html
    assert cut in page and "x" * 10_001 not in page and len(page) < 100_000
    assert run_record(report).status == "done"


@override_settings(DATAPIPE={"PROGRESS": False, "ERROR_MESSAGE_MAX": 5, "ERROR_ARGS_MAX": 20,
                             "TRACEBACK_PAGE_MAX": 1000})
def test_the_caps_are_settings(isolated_registry):
    make_items("long")
    exc = ValueError("abcdefgh", list(range(50)))
    run_hostile(raising(long=exc), SourceItem.objects.all())
    row = PipelineError.objects.get()
    assert row.error_message == f"('abc… [cut at 5 of {len(str(exc))} characters]"
    args = '["abcdefgh", [' + ", ".join(map(str, range(50))) + "]]"
    assert row.error_args == [f"{args[:20]}… [cut at 20 of {len(args)} characters]"]
    page = row.traceback_html
    assert page.startswith("<!DOCTYPE html>") and page.endswith("]") and len(page) < 1100


# Exceptions and items whose own code raises -----------------------------------------------


@pytest.mark.parametrize("exc, error_type, message, args", [
    (BadStr("x"), "tests.test_hostile.BadStr", "<message could not be read: RuntimeError>",
     ["x"]),
    (NotText(), "tests.test_hostile.NotText", "<message could not be read: TypeError>", []),
    (ValueError(BadRepr()), "ValueError", "<message could not be read: RuntimeError>",
     ["<repr could not be read: RuntimeError>"]),
    (BadArgs("readable"), "tests.test_hostile.BadArgs", "readable",
     ["<args could not be read: RuntimeError>"]),
    (ValueError(b"\x00", {1}, CIRCULAR, (1, "a")), "ValueError",
     "(b'\\x00', {1}, [[...]], (1, 'a'))", ["b'\\x00'", "{1}", "[[...]]", "(1, 'a')"]),
], ids=["str raises", "str returns no text", "arg's repr raises", "args raises", "weird args"])
def test_an_exception_whose_own_code_raises_is_collected_and_later_items_run(
        isolated_registry, exc, error_type, message, args):
    bad, ok = make_items("bad", "ok")
    report = run_hostile(raising(bad=exc), SourceItem.objects.all())
    row = PipelineError.objects.get()
    assert (row.item_id, row.error_type, row.error_message, row.error_args) == (
        str(bad.pk), error_type, message, args)
    assert row.traceback_html.startswith("<!DOCTYPE html>")
    assert outputs() == [ok.pk]
    assert run_record(report).status == "done"


def test_items_whose_repr_raises_are_each_collected(isolated_registry):
    def process(self):
        raise ValueError("no")

    report = run_hostile(process, [BadRepr(), BadRepr()])
    found = list(PipelineError.objects.values_list("item_repr", "item_value", "attempts"))
    assert found == [("<repr could not be read: RuntimeError>", None, 1)] * 2
    assert (run_record(report).status, report.errored) == ("done", 2)


def test_a_local_or_a_cause_whose_repr_or_str_raises_still_leaves_a_page(isolated_registry):
    def process(self):
        broken = BadRepr()  # noqa: F841  (shown in the page)
        raise ValueError("outer") from BadStr()

    run_hostile(process, [1])
    page = PipelineError.objects.get().traceback_html
    assert "Error in formatting: RuntimeError" in page and "outer" in page
    assert "The above exception (&lt;message could not be read: RuntimeError&gt;)" in page


def test_a_cause_that_cannot_be_compared_leaves_the_page_without_causes(isolated_registry):
    def process(self):  # Django compares the causes, looking for a cycle
        raise ValueError("outer") from Uncomparable()

    run_hostile(process, [1])
    page = PipelineError.objects.get().traceback_html
    assert page.startswith("<!DOCTYPE html>") and "was the direct " + "cause" not in page


# Outputs that fail at the flush fail their item alone -------------------------------------


@pytest.mark.parametrize("atomic", [True, False])
def test_any_exception_an_output_raises_at_the_flush_fails_its_item_alone(
        isolated_registry, atomic):
    def process(self):
        number = {"not_a_number": "not-a-number", "list": [1, 2]}.get(self.item.behaviour, 1)
        output = self.add_to_save(ResultItem(source=self.item, number=number))
        if self.item.behaviour == "unsaved":
            self.add_to_save(Note(result=ResultItem(), text="points at nothing saved"))
        if self.item.behaviour == "duplicate":
            output.unique_key = "taken"
        return self.item

    ResultItem.objects.create(unique_key="taken")
    ok, *failing, last = make_items("ok", "not_a_number", "unsaved", "list", "duplicate", "ok")
    report = run_hostile(process, SourceItem.objects.all(), atomic=atomic, chunksize=10)
    found = errors()
    duplicate = found.pop(str(failing[3].pk))
    assert found == {
        str(failing[0].pk): ("ValueError", NOT_A_NUMBER),
        str(failing[1].pk): ("ValueError", "bulk_create() prohibited to prevent data loss due "
                                           "to unsaved related object 'result'."),
        str(failing[2].pk): ("TypeError", "Field 'number' expected a number but got [1, 2]."),
    }
    assert duplicate[0] == "django.db.utils.IntegrityError"
    assert outputs() == [ok.pk, last.pk] and not Note.objects.exists()
    assert (report.succeeded, report.errored, run_record(report).status) == (2, 4, "done")


# Stored pages hold no settings and no credentials -----------------------------------------


def test_stored_pages_hold_no_settings(isolated_registry):
    make_items("bad")
    run_hostile(raising(bad=ValueError("no")), SourceItem.objects.all())
    page = PipelineError.objects.get().traceback_html
    assert "datapipe-tests-only" not in page and "ROOT_URLCONF" not in page  # settings
    assert "settings-info" not in page and "Using settings module" not in page


def test_a_broker_url_password_in_a_local_and_the_message_is_cleansed(isolated_registry):
    def process(self):
        broker = self.context.broker
        raise ConnectionError(f"down: {broker}")

    url = f"redis://worker:{SECRET}@broker.example:6379/0"
    run_hostile(process, [1], context={"broker": url})
    row, shown = PipelineError.objects.get(), f"redis://worker:{HIDDEN}@broker.example:6379/0"
    assert (row.error_message, row.error_args) == (f"down: {shown}", [f"down: {shown}"])
    assert SECRET not in row.traceback_html and shown in row.traceback_html
    assert "&#x27;redis://worker:" + HIDDEN in row.traceback_html  # the local's value


@pytest.mark.parametrize("text, shown", [
    (f"amqp://:{SECRET}@rabbit/", f"amqp://:{HIDDEN}@rabbit/"),
    (f"https://{SECRET}@o1.ingest.sentry.io/42", f"https://{HIDDEN}@o1.ingest.sentry.io/42"),
    (f"Authorization: Bearer {SECRET}", f"Authorization: {HIDDEN}"),
    (f"user=etl password={SECRET} host=db", f"user=etl password={HIDDEN} host=db"),
    (f"https://api.example/v1?api_key={SECRET}&p=2", f"https://api.example/v1?api_key={HIDDEN}&p=2"),
    (f"{{'db_password': '{SECRET}'}}", f"{{'db_password': '{HIDDEN}'}}"),
], ids=["url without user", "sentry dsn", "authorization header", "dsn", "query", "dict repr"])
def test_credentials_are_cleansed_wherever_they_appear(isolated_registry, text, shown):
    def process(self):
        value = self.item["text"]
        raise ValueError(f"failed with {value}") from KeyError(value)

    report = run_hostile(process, [{"text": text}])
    row = PipelineError.objects.get()
    assert (row.error_message, row.error_args) == (f"failed with {shown}", [f"failed with {shown}"])
    assert SECRET not in row.traceback_html and SECRET not in row.item_repr
    assert row.item_value == {"text": text}  # kept as it was: reprocessing runs it again
    assert run_record(report).status == "done"


# A pipe that closes the database connection ------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", [True, False])
def test_a_pipe_closing_the_connection_fails_its_item_and_the_run(
        postgres_only, isolated_registry, atomic):
    def process(self):
        self.add_to_save(ResultItem(source=self.item))
        if self.item.behaviour == "close":
            connection.close()
        if self.item.behaviour == "error":
            raise ValueError("a real error")

    first, error, closing, later = make_items("ok", "error", "close", "ok")
    with pytest.raises(ConnectionClosed) as raised:
        run_hostile(process, SourceItem.objects.all(), atomic=atomic, chunksize=2)
    message = (f"<SourceItem {closing.pk} close> closed the database connection inside the "
               "run's transaction (connection.close() in process()?): the run's work since its "
               "last commit is lost, and the run stops here.")
    assert str(raised.value) == message
    assert errors() == {str(error.pk): ("ValueError", "a real error"),
                     str(closing.pk): ("datapipe.exceptions.ConnectionClosed", message)}
    assert outputs() == ([] if atomic else [first.pk])  # the first batch committed
    record = PipelineRun.objects.get()
    assert (record.status, record.message) == ("failed", f"ConnectionClosed: {message}")


# Celery messages: the task trusts the rows, not the message ----------------------------------


def dispatched(items, name="hostile"):  # written, never sent: the test never commits
    handle = get_session().run_in_celery(items, name, celery_chunksize=len(items))
    return handle.id, PipelineChunk.objects.get(run_id=handle.id)


def test_a_genuine_message_runs_its_chunk_with_each_failure_on_its_item(isolated_registry):
    def process(self):
        number = "not-a-number" if self.item.behaviour == "bad_output" else 1
        self.add_to_save(ResultItem(source=self.item, number=number))
        if self.item.behaviour == "dirty":
            raise ValueError("bad\x00byte" + SURROGATE)

    dirty, bad_output, ok = make_items("dirty", "bad_output", "ok")
    register(process)
    run_id, chunk = dispatched([dirty, bad_output, ok])
    assert run_task.apply(kwargs={"run_id": run_id, "chunk_id": chunk.pk}).get() == "done"
    assert errors() == {
        str(dirty.pk): ("ValueError", "bad\\x00bytecaf\\udce9"),
        str(bad_output.pk): ("ValueError", NOT_A_NUMBER)}
    assert outputs() == [ok.pk]
    chunk.refresh_from_db()
    assert (chunk.status, chunk.errored, chunk.run.status) == ("done", 2, "done")


@pytest.mark.parametrize("forged", [
    {"run_id": "other"}, {"items": [1, 2]}, {"chunk_id": [1]}, {"run_id": "1"},
    {"using": "nowhere"}, {"options": {"debug": True}},
], ids=["chunk of another run", "items", "list id", "text id", "unknown database", "options"])
def test_a_forged_message_is_rejected_and_touches_no_chunk(isolated_registry, caplog, forged):
    (item,) = make_items("ok")
    register(raising())
    run_id, chunk = dispatched([item])
    other_run, _ = dispatched([item])
    message = {"run_id": run_id, "chunk_id": chunk.pk, **forged}
    if message["run_id"] == "other":
        message["run_id"] = other_run
    assert run_task.apply(kwargs=message).get() == "rejected"
    assert "Rejected a" in caplog.text
    assert set(PipelineChunk.objects.values_list("status", "deliveries")) == {("dispatched", 0)}
    assert not ResultItem.objects.exists()
    assert set(PipelineRun.objects.values_list("status", flat=True)) == {"running"}
