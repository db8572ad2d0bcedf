"""Pipe classes: hooks in MRO order, add_to_save, flow helpers, eval."""

import pytest

from datapipe import InvalidOutput, Pipe, PipeBreak, PipeContinue, PipeIgnore, get_session, pipeline
from datapipe.pipe import AttrDict
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db


def test_hooks_run_in_c3_order_through_super(isolated_registry):
    calls = []

    class Base(Pipe):
        def process(self):
            calls.append("Base")
            return super().process()

    class Left(Base):
        def process(self):
            calls.append("Left")
            return super().process()

    class Right(Base):
        def process(self):
            calls.append("Right")
            return super().process()

    @pipeline("test.diamond")
    class Diamond(Left, Right):
        def process(self):
            calls.append("Diamond")
            return super().process()

    get_session().run([1], "test.diamond")
    assert calls == ["Diamond", "Left", "Right", "Base"]


def test_prepare_may_filter_and_finish_sees_the_results(isolated_registry):
    seen = {}

    @pipeline("test.filter")
    class Filter(Pipe):
        def prepare(self, items):
            return [i for i in super().prepare(items) if i % 2]

        def process(self):
            return self.item * 10

        def finish(self, results):
            seen["results"] = list(results)

    report = get_session().run(range(6), "test.filter")
    assert report.processed == 3
    assert seen["results"] == [10, 30, 50]


def test_prepare_runs_on_an_instance_with_no_item_and_process_on_fresh_ones(isolated_registry):
    instances = []

    @pipeline("test.instances")
    class Instances(Pipe):
        def prepare(self, items):
            instances.append((self, self.item))
            return items

        def process(self):
            instances.append((self, self.item))
            assert not hasattr(self, "mark")
            self.mark = True

    get_session().run(["a", "b"], "test.instances")
    assert [item for _, item in instances] == [None, "a", "b"]
    assert len({id(pipe) for pipe, _ in instances}) == 3


def test_add_to_save_returns_the_object_or_a_tuple():
    pipe = Pipe()
    one = ResultItem(number=1)
    assert pipe.add_to_save(one) is one
    two = (ResultItem(number=2), ResultItem(number=3))
    assert pipe.add_to_save(*two) == two


@pytest.mark.parametrize("bad", [42, {"number": 1}, ResultItem])
def test_add_to_save_refuses_what_is_not_a_model_instance(bad):
    with pytest.raises(InvalidOutput, match="unsaved model instances"):
        Pipe().add_to_save(bad)


def test_add_to_save_refuses_saved_instances():
    saved = ResultItem.objects.create(number=1)
    with pytest.raises(InvalidOutput, match="already saved"):
        Pipe().add_to_save(saved)


def test_add_to_save_needs_an_object():
    with pytest.raises(InvalidOutput):
        Pipe().add_to_save()


def test_invalid_output_in_process_is_collected_as_the_item_error(isolated_registry):
    @pipeline("test.bad_output")
    class BadOutput(Pipe):
        def process(self):
            self.add_to_save("not a model")

    report = get_session().run([1, 2], "test.bad_output")
    assert report.errored == 2
    assert "InvalidOutput" in report.errors[0].error_type


def test_flow_helpers_raise_the_flow_exceptions():
    pipe = Pipe(1)
    with pytest.raises(PipeIgnore):
        pipe.ignore("why")
    with pytest.raises(PipeBreak):
        pipe.break_()
    with pytest.raises(PipeContinue) as continued:
        pipe.continue_(5)
    assert continued.value.value == 5


def test_eval_runs_one_class_alone_and_saves_nothing_buffered():
    from tests.testapp.pipes import Save

    item = SourceItem.objects.create(number=7)
    assert Save.eval(item) == item
    assert ResultItem.objects.count() == 0


def test_eval_lets_exceptions_propagate():
    from tests.testapp.pipes import FlowPipeline

    item = SourceItem.objects.create(behaviour="error")
    with pytest.raises(ValueError, match="bad item"):
        FlowPipeline.eval(item)


def test_attrdict_reads_and_writes_keys_as_attributes():
    ctx = AttrDict(a=1)
    ctx.b = 2
    assert (ctx.a, ctx["b"]) == (1, 2)
    del ctx.a
    with pytest.raises(AttributeError):
        getattr(ctx, "a")  # noqa: B009
