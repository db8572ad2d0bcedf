"""The Django app: imports every installed app's pipes module and checks the graph."""

from django.apps import AppConfig


class DatapipeConfig(AppConfig):
    """Autodiscovers pipelines in ``ready()`` and refuses cycles at start-up."""

    name = "datapipe"
    verbose_name = "Datapipe"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
        from .registry import registry

        registry.autodiscover()
        registry.check_cycles()
