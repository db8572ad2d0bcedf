"""Exceptions of datapipe.

Two families live here:

**Flow control**, raised from a pipe's ``process()`` (or its ``fetch()``, the same for
its item) to steer the item loop. They are not errors and do not derive from
:class:`DatapipeError`.

==================  ===================  =================  ==================  ===================
raised              item's DB changes    item's buffered    the loop            result collected
                                         saves
==================  ===================  =================  ==================  ===================
``PipeContinue``    kept                 kept               next item           ``value``
``PipeIgnore``      rolled back          dropped            next item           no (ignored)
``PipeBreak``       rolled back          dropped            stops, ``finish``   no
``PipeError``       whole run rolled     all dropped        stops, raised       no
                    back
other exception     rolled back          dropped            next item           no (errored)
==================  ===================  =================  ==================  ===================

**Framework errors**, all under :class:`DatapipeError`: bad input or configuration.
"""

from difflib import get_close_matches

from django.core.exceptions import ImproperlyConfigured


class PipeFlow(Exception):
    """Base of the flow-control exceptions (not an error)."""


class PipeContinue(PipeFlow):
    """Stop processing this item, keep what it did, collect ``value`` as its result."""

    _unset = object()

    def __init__(self, value=_unset):
        super().__init__(value)
        self.value = value


class PipeIgnore(PipeFlow):
    """Roll this item back and go on with the next one; it is counted as ignored."""


class PipeBreak(PipeFlow):
    """Roll this item back and stop the loop; earlier items are kept, ``finish`` runs."""


class PipeError(PipeFlow):
    """Roll the whole run back and raise this exception to the caller."""


class DatapipeError(Exception):
    """Root of the errors about datapipe itself: bad input or configuration."""


class PipelineNotFound(DatapipeError, LookupError):
    """No pipeline is registered under the given name."""

    def __init__(self, name, known=()):
        self.name = name
        matches = get_close_matches(str(name), list(known), n=3, cutoff=0.5)
        message = f"No pipeline is registered as {name!r}."
        if matches:
            message += " Did you mean " + " or ".join(repr(m) for m in matches) + "?"
        elif not known:
            message += " No pipeline is registered at all: is the app's pipes module imported?"
        super().__init__(message)


class PipelineCycle(DatapipeError, ImproperlyConfigured):
    """Pipelines depend on or trigger each other in a cycle."""

    def __init__(self, cycle):
        self.cycle = list(cycle)
        super().__init__("Pipelines form a cycle through depends/triggers: " + " -> ".join(cycle))


class PipelineDefinitionError(DatapipeError, ImproperlyConfigured):
    """A pipeline is declared wrongly (bad name, not a Pipe subclass, bad composition)."""


class InvalidItems(DatapipeError, TypeError):
    """What was handed to ``run()`` (or returned by ``prepare()``) is not items."""


class InvalidOutput(DatapipeError, TypeError):
    """``add_to_save()`` was given something that is not an unsaved model instance."""


class InvalidFetch(DatapipeError, TypeError):
    """A plain ``def fetch()`` returned a coroutine or another awaitable: it should be
    ``async def`` (the item is collected as an error naming the pipe)."""


class FetchUsedDatabase(DatapipeError):
    """A pipe's ``fetch()`` queried the database, which it must not: it runs outside the
    run's transaction, for several items at once (the item is collected as an error)."""


class ItemNotSerializable(DatapipeError, TypeError):
    """An item cannot be sent to Celery: it is neither a saved model instance nor a value
    that comes back equal from JSON (NaN, Infinity, tuples, non-string keys, NUL, lone
    surrogates)."""


class ConnectionClosed(DatapipeError):
    """A pipe closed the database connection inside the run's transaction.

    The transaction is lost with the connection: the item that closed it is collected
    as an error (``item``), no later item runs, and the run fails with this error.
    """

    def __init__(self, item, message: str):
        self.item = item
        super().__init__(message)


class DispatchFailed(DatapipeError):
    """The chunks of a distributed run could not be sent to the broker.

    ``run_id`` names the run: it is marked failed, and ``resend`` sends its chunks once
    the broker is back.
    """

    def __init__(self, run_id: int, message: str):
        self.run_id = run_id
        super().__init__(message)


class NothingToResend(DatapipeError):
    """``resend`` was given a run that has no chunk to send: unknown, local, or finished."""


class ErrorThresholdExceeded(DatapipeError):
    """More items failed than the pipeline's ``max_errors`` / ``max_error_rate`` allow:
    the run stopped as for ``PipeError`` (an atomic run is rolled back; error rows stay).

    ``errored`` and ``processed`` are the counts when it stopped.
    """

    def __init__(self, pipeline: str, errored: int, processed: int):
        self.pipeline, self.errored, self.processed = pipeline, errored, processed
        super().__init__(
            f"error threshold exceeded: {errored} of {processed} items failed")


class SourceError(DatapipeError):
    """A file or URL could not be read (missing, refused, unknown scheme, cut short):
    the message names the place (URL, and line when there is one)."""


class UnreadableRecord(DatapipeError, ValueError):
    """One record of a file could not be read (a malformed line, a missing key): its item
    fails with this error, naming the file and the line; the other records go on."""


class SinkError(DatapipeError):
    """A sink could not write its file: the run fails with this message, its items do
    not, and no partial file is left."""


class LookupMissing(DatapipeError, LookupError):
    """A :class:`datapipe.lookups.Lookup` found no value for a key in any tier, and no
    ``default`` was given."""
