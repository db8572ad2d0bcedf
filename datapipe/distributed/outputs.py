"""What a distributed run does with its outputs once its last chunk is done.

* ``prune=True`` (a full refresh): the outputs of the items tracked under the pipeline
  that no chunk processed into outputs are deleted, except those of items that failed
  in the run (see :meth:`datapipe.tracking.Tracker.prune`); skipped when a chunk broke
  off its loop or failed (not every item was seen).
* Sinks (:mod:`datapipe.sinks`): one file per run, from the results the chunks stored
  on their rows, in chunk order; none when a chunk failed.

Called by :func:`datapipe.distributed.ledger.finish_if_complete`, once per run.
"""

from __future__ import annotations

from django.db import transaction

from ..exceptions import ItemNotSerializable, SinkError
from ..sinks import sinks_of, write_sinks
from .chunks import decode_chunk

__all__ = ["finish_outputs", "keeps_results"]


def keeps_results(cls) -> bool:
    """Whether a chunk of the pipeline ``cls`` stores its results for the end of the run."""
    return bool(sinks_of(cls))


def finish_outputs(run, cls, complete: bool) -> str:
    """Prune and write the sinks of ``run`` (of the pipeline ``cls``) if it is
    ``complete`` (every chunk committed); return the failure's message, or ``""``."""
    from ..models import PipelineError
    from ..tracking import prune_run

    using = run._state.db
    if complete and run.dispatch.get("options", {}).get("prune") and not run.broke:
        failed = PipelineError.objects.using(using).filter(
            pipeline_name=run.pipeline_name, run=run).values_list("item_content_type_id",
                                                                  "item_id")
        with transaction.atomic(using=using):
            prune_run(run, using, list(failed))
    sinks = sinks_of(cls)
    if not sinks:
        return ""
    try:
        if complete:
            write_sinks(sinks, lambda: _results(run, using), run)
    except SinkError as exc:
        return str(exc)
    finally:
        run.chunks.update(results=None)
    return ""


def _results(run, using: str):
    for chunk in run.chunks.order_by("index").only("pk", "index", "results").iterator():
        if chunk.results is None:
            raise SinkError(f"the results of chunk {chunk.index} were not stored (they are "
                            "neither JSON nor saved model instances): nothing written")
        try:
            yield from decode_chunk(chunk.results, using)
        except ItemNotSerializable as exc:
            raise SinkError(str(exc)) from None
