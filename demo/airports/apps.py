from django.apps import AppConfig


class AirportsConfig(AppConfig):
    """US airports imported from the vega_datasets package, and counts per state."""

    name = "airports"
    default_auto_field = "django.db.models.BigAutoField"
