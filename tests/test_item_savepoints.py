"""Item savepoints stay right when batches commit between items that query."""

import pytest
from django.db import transaction

from datapipe import get_session
from tests.testapp.models import ResultItem, SourceItem


def make_items(*behaviours):
    return [SourceItem.objects.create(number=i, behaviour=b) for i, b in enumerate(behaviours)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("inside_atomic", [False, True], ids=["top level", "inside atomic"])
def test_items_that_query_keep_or_undo_their_changes_across_batch_commits(inside_atomic):
    make_items(*(["query", "query_error", "query_ignore", "ok"] * 5))

    def run():
        session = get_session(chunksize=3, atomic=False)
        return session.run(SourceItem.objects.all(), "flow.untracked")

    if inside_atomic:
        with transaction.atomic():
            report = run()
    else:
        report = run()
    assert (report.succeeded, report.errored, report.ignored) == (10, 5, 5)
    assert ResultItem.objects.count() == 10
    touched = SourceItem.objects.filter(touched=1).values_list("behaviour", flat=True)
    assert list(touched) == ["query"] * 5
