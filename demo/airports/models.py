"""Raw rows as they come, the airports and states made from them, counts per state."""

from django.db import models


class RawAirport(models.Model):
    """A row of ``airports.csv``, as read: every field a string, ``"NA"`` included."""

    iata = models.CharField(max_length=4, unique=True)
    data = models.JSONField()

    def __str__(self):
        return f"{self.iata} {self.data.get('name', '')}"

    def __repr__(self):
        return f"<RawAirport {self.iata}>"


class State(models.Model):
    """A US state or territory that some airport is in."""

    code = models.CharField(max_length=2, unique=True)
    name = models.CharField(max_length=60)

    def __str__(self):
        return f"{self.name} ({self.code})"


class Airport(models.Model):
    """An airport made from one raw row by the ``airports.import`` pipeline."""

    raw = models.OneToOneField(RawAirport, on_delete=models.CASCADE, related_name="airport")
    iata = models.CharField(max_length=4, unique=True)
    name = models.CharField(max_length=200)
    city = models.CharField(max_length=100, blank=True)
    state = models.ForeignKey(State, null=True, blank=True, on_delete=models.PROTECT)
    country = models.CharField(max_length=60)
    latitude = models.FloatField()
    longitude = models.FloatField()

    def __str__(self):
        return f"{self.iata} {self.name}"


class StateSummary(models.Model):
    """Airports per state, kept up to date by the triggered ``airports.by_state``.

    ``state`` is null for the airports whose state is unknown.
    """

    state = models.OneToOneField(State, null=True, blank=True, on_delete=models.CASCADE)
    airports = models.PositiveIntegerField()
    northernmost = models.CharField(max_length=4)
    southernmost = models.CharField(max_length=4)

    class Meta:
        verbose_name_plural = "state summaries"
        ordering = ["-airports", "state__code"]

    def __str__(self):
        return f"{self.state or 'unknown state'}: {self.airports} airports"
