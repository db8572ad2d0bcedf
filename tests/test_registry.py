"""The registry: composition, depends, triggers, cycles, lookups."""

import pytest
from django.core import checks

from datapipe import Pipe, PipelineCycle, PipelineNotFound, get_session, pipeline, registry
from datapipe.exceptions import PipelineDefinitionError

pytestmark = pytest.mark.django_db


def test_pipes_modules_of_installed_apps_are_autodiscovered():
    assert {"flow", "flow.derived", "discount_sum"} <= set(registry.names())


def test_several_classes_under_one_name_compose_last_registered_outermost(isolated_registry):
    calls = []

    @pipeline("test.composed")
    class A(Pipe):
        def process(self):
            calls.append("A")
            return super().process()

    @pipeline("test.composed")
    class B(Pipe):
        def process(self):
            calls.append("B")
            return super().process()

    composed = registry.get("test.composed")
    assert composed.__mro__[1:3] == (B, A)
    get_session().run([1], "test.composed")
    assert calls == ["B", "A"]


def test_registering_the_same_class_again_replaces_it(isolated_registry):
    def define():
        class Twice(Pipe):
            pass

        Twice.__qualname__ = "Twice"
        return Twice

    first, second = define(), define()
    pipeline("test.twice")(first)
    pipeline("test.twice")(second)
    assert registry.get("test.twice") is second


def test_classes_that_cannot_compose_are_refused(isolated_registry):
    class Base(Pipe):
        pass

    class Child(Base):
        pass

    pipeline("test.mro")(Child)
    with pytest.raises(PipelineDefinitionError, match="cannot compose"):
        pipeline("test.mro")(Base)
    assert registry.get("test.mro") is Child


def test_only_pipe_subclasses_register(isolated_registry):
    with pytest.raises(PipelineDefinitionError, match="Pipe subclasses"):
        pipeline("test.object")(object)
    with pytest.raises(PipelineDefinitionError, match="non-empty string"):
        pipeline("")(Pipe)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(PipelineNotFound) as raised:
        registry.get("discount_summ")
    assert "'discount_sum'" in str(raised.value)


def test_depends_are_merged_across_base_classes():
    assert registry.depends_of("recorder.third") == ["recorder.first", "recorder.extra"]


def test_depends_run_first_on_the_same_items_with_the_same_context():
    from tests.testapp.models import SourceItem

    items = SourceItem.objects.bulk_create([SourceItem(), SourceItem()])
    sess = get_session()
    report = sess.run(SourceItem.objects.all(), "recorder.third")
    log = [tuple(entry) for entry in sess.context.log]
    pks = [i.pk for i in items]
    assert log == [
        ("first", "prepare", None), ("first", "process", pks[0]), ("first", "process", pks[1]),
        ("first", "finish", 2),
        ("extra", "prepare", None), ("extra", "process", pks[0]), ("extra", "process", pks[1]),
        ("extra", "finish", 2),
        ("third", "prepare", None), ("third", "process", pks[0]), ("third", "process", pks[1]),
        ("third", "finish", 2),
    ]
    assert [r.pipeline for r in report.dependencies] == ["recorder.first", "recorder.extra"]


def test_depends_on_a_generator_see_every_item(isolated_registry):
    seen = []

    @pipeline("test.dep")
    class Dep(Pipe):
        def process(self):
            seen.append(("dep", self.item))

    @pipeline("test.main")
    class Main(Pipe):
        depends = ["test.dep"]

        def process(self):
            seen.append(("main", self.item))

    get_session().run((i for i in range(2)), "test.main")
    assert seen == [("dep", 0), ("dep", 1), ("main", 0), ("main", 1)]


def test_triggers_run_after_the_source_on_its_results(isolated_registry):
    seen = []

    @pipeline("test.source")
    class Source(Pipe):
        def process(self):
            return self.item * 2

    @pipeline("test.target", trigger="test.source")
    class Target(Pipe):
        def process(self):
            seen.append((self.item, dict(self.context)))

    sess = get_session(context={"k": 1})
    report = sess.run([1, 2], "test.source")
    assert seen == [(2, {"k": 1}), (4, {"k": 1})]
    assert report.triggered[0].pipeline == "test.target"


def test_trigger_errors_are_its_own_and_keep_the_source(isolated_registry):
    from tests.testapp.models import ResultItem

    @pipeline("test.src")
    class Src(Pipe):
        def process(self):
            return self.add_to_save(ResultItem(number=self.item))

    @pipeline("test.failing_trigger", triggers=["test.src"])
    class Failing(Pipe):
        def process(self):
            raise RuntimeError("trigger broke")

    report = get_session().run([1, 2], "test.src")
    assert report.succeeded == 2 and report.triggered[0].errored == 2
    assert ResultItem.objects.count() == 2


def test_a_cycle_is_refused_with_the_cycle_spelled_out(isolated_registry):
    @pipeline("test.c")
    class C(Pipe):
        pass

    with pytest.raises(PipelineCycle) as raised:

        @pipeline("test.b", trigger="test.c")
        class B(Pipe):
            depends = ["test.c"]

    # b needs c first, and every run of c triggers b: a loop.
    assert "test.b -> test.c -> test.b" in str(raised.value)
    assert "test.b" not in registry  # the refused registration left nothing behind
    assert registry.triggers_of("test.c") == []


def test_a_self_dependency_is_a_cycle(isolated_registry):
    with pytest.raises(PipelineCycle, match="test.self -> test.self"):

        @pipeline("test.self")
        class Self(Pipe):
            depends = ["test.self"]


def test_system_check_reports_unknown_names(isolated_registry):
    @pipeline("test.dangling")
    class Dangling(Pipe):
        depends = ["test.nowhere"]

    errors = checks.run_checks()
    assert any(e.id == "datapipe.E001" and "test.nowhere" in e.msg for e in errors)
