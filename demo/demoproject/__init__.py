"""The demo project: datapipe on the airports table of the vega_datasets package."""

from .celery import app as celery_app

__all__ = ["celery_app"]
