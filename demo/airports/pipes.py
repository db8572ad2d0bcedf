"""The demo's pipelines, from raw CSV rows to airports and counts per state.

``airports.load``      CSV rows (records keyed by IATA code) -> RawAirport staging rows
``airports.states``    RawAirport -> State rows for the codes they use (a depends)
``airports.import``    RawAirport -> Airport, after ``airports.states``; a CSV export
``airports.by_state``  triggered by each run of ``airports.import``: StateSummary
``airports.check``     Airport -> compared with a remote registry, fetched concurrently

The first version of the import trips on a real defect of the data: twelve rows spell
their unknown city and state ``"NA"``. Their failures are collected as one error group;
once the import knows that ``"NA"`` means missing (``settings.AIRPORTS_NA_IS_MISSING``,
standing in for a code fix), reprocessing the group imports them.
"""

import httpx
from django.conf import settings
from django.db.models import Count, QuerySet

from datapipe import Pipe, Retry, pipeline
from datapipe.sinks import CSV

from .models import Airport, RawAirport, State, StateSummary
from .states import STATE_NAMES

MISSING = "NA"  # how the data set writes a missing value


@pipeline("airports.load")
class LoadRawRows(Pipe):
    """Stages each CSV row (a record keyed by its IATA code) as a RawAirport.

    Reparse tracks each staged row under its key: loading a changed file again replaces
    the rows that changed; ``select="new"`` loads only the keys never staged.
    """

    def prepare(self, items):
        # Rows staged by a demo database of before keyed records have no tracker:
        # select="new" cannot tell them, this can.
        staged = set(RawAirport.objects.values_list("iata", flat=True))
        return super().prepare([row for row in items if row["iata"] not in staged])

    def process(self):
        row = super().process()
        self.add_to_save(RawAirport(iata=row["iata"], data=row))
        return row


@pipeline("airports.states")
class CreateStates(Pipe):
    """Makes sure a State exists for each state code the raw rows use.

    ``prepare`` creates the missing ones, all at once and in code order: Celery chunks
    running at the same time then wait for each other rather than deadlock. Rows whose
    code is unknown are ignored (``PipeIgnore``): counted, not collected as errors.
    """

    def prepare(self, items):
        if isinstance(items, QuerySet):  # one query, not every row in memory
            used = set(items.values_list("data__state", flat=True).distinct())
        else:
            used = {raw.data["state"] for raw in items}
        codes = used & STATE_NAMES.keys()
        for code in sorted(codes - set(State.objects.values_list("code", flat=True))):
            State.objects.get_or_create(code=code, defaults={"name": STATE_NAMES[code]})
        return super().prepare(items)

    def process(self):
        raw = super().process()
        if raw.data["state"] not in STATE_NAMES:
            self.ignore(f"unknown state code {raw.data['state']!r}")
        return raw


class ParseAirport(Pipe):
    """Turns the raw row of ``self.item`` into ``self.fields``, the Airport's fields."""

    def prepare(self, items):
        # One query per run instead of one per item: state code -> State id.
        self.local.state_ids = dict(State.objects.values_list("code", "id"))
        return super().prepare(items)

    def process(self):
        raw = super().process()
        row = raw.data
        city, state_code = row["city"], row["state"]
        if settings.AIRPORTS_NA_IS_MISSING and state_code == MISSING:
            city, state_id = ("" if city == MISSING else city), None
        else:
            state_id = self.local.state_ids[state_code]  # KeyError: 'NA' in the first version
        self.fields = dict(
            iata=row["iata"], name=row["name"], city=city, state_id=state_id,
            country=row["country"], latitude=float(row["latitude"]),
            longitude=float(row["longitude"]),
        )
        return raw


@pipeline("airports.import", schedule="0 * * * *")
class ImportAirport(ParseAirport):
    """Saves one Airport per raw row; re-running replaces it (reparse).

    Its results (the airports) are what ``airports.by_state`` runs on, and what its sink
    writes, after each run commits, to ``demo/exports/`` (one CSV file per run). With
    ``docker compose up``, the beat service runs it every hour over its ``source()``.
    """

    depends = ["airports.states"]
    sink = CSV(str(settings.BASE_DIR / "exports" / "{pipeline}-{run_id}.csv"))

    def source(self):
        return RawAirport.objects.all()

    def process(self):
        raw = super().process()
        return self.add_to_save(Airport(raw=raw, **self.fields))


@pipeline("airports.by_state", trigger="airports.import")
class CountByState(Pipe):
    """Recounts the airports of every state that the triggering run touched.

    The counts come from the database, not from the items, so a run over a few items
    (a reprocess) leaves every summary right. In Celery every chunk triggers its own
    run: the states are locked first, so that of two chunks recounting a state, the
    later one counts after the earlier one has written. ``context.summaries`` adds up
    the summaries written by the runs sharing the context.
    """

    track = False  # summaries are rewritten in place, not outputs of one airport

    def prepare(self, items):
        self.local.states = set()
        return super().prepare(items)

    def process(self):
        airport = super().process()
        self.local.states.add(airport.state_id)
        return airport

    def finish(self, results):
        super().finish(results)
        # NO KEY: imports inserting airports of these states (key-share locks) go on.
        locked = State.objects.select_for_update(no_key=True).filter(pk__in=self.local.states)
        list(locked.order_by("pk"))  # one order for every run: no deadlock between them
        for state_id in sorted(self.local.states, key=lambda pk: pk or 0):
            airports = Airport.objects.filter(state_id=state_id).order_by("latitude")
            if airports.exists():
                StateSummary.objects.update_or_create(
                    state_id=state_id,
                    defaults=dict(
                        airports=airports.aggregate(n=Count("id"))["n"],
                        southernmost=airports.first().iata,
                        northernmost=airports.last().iata,
                    ),
                )
            else:
                StateSummary.objects.filter(state_id=state_id).delete()
        self.context.summaries = self.context.get("summaries", 0) + len(self.local.states)


@pipeline("airports.check")
class CheckWithRegistry(Pipe):
    """Compares airports with their entry in a remote registry (``context.registry``, a
    base URL: the demo serves one itself, :mod:`airports.registry`).

    ``fetch`` makes the HTTP call, for ``concurrency`` airports at a time on a thread pool
    and outside the run's transaction; ``process`` compares, in order. One
    ``httpx.Client`` (thread-safe) serves the run's threads. Airports whose coordinates
    differ from the registry's are ignored.
    """

    track = False  # it saves nothing
    # A registry that times out or drops a connection now and then: tried again later,
    # while the other airports go on; an error row only after the third failure.
    retry = Retry(on=(httpx.TransportError,), attempts=3, backoff=0.2, max_delay=2)

    def prepare(self, items):
        self.local.client = httpx.Client(base_url=self.context["registry"])
        return super().prepare(items)

    def fetch(self):
        response = self.local.client.get(f"/airports/{self.item.iata}")
        response.raise_for_status()
        self.remote = response.json()
        return super().fetch()

    def process(self):
        airport = super().process()
        remote = (float(self.remote["latitude"]), float(self.remote["longitude"]))
        if remote != (airport.latitude, airport.longitude):
            self.ignore(f"{airport.iata}: the registry has other coordinates")
        return airport

    def finish(self, results):
        self.local.client.close()
        super().finish(results)
