"""datapipe: reliable batch processing for Django, locally or on Celery workers.

Importing this package imports no models, so it works before the app registry is ready.
"""

#: The version of datapipe (the one source of it: setup.cfg reads it from here).
__version__ = "0.1.0"

from .errors.reprocess import reprocess
from .exceptions import (
    ConnectionClosed,
    DatapipeError,
    DispatchFailed,
    ErrorThresholdExceeded,
    FetchUsedDatabase,
    InvalidFetch,
    InvalidItems,
    InvalidOutput,
    ItemNotSerializable,
    PipeBreak,
    PipeContinue,
    PipeError,
    PipeIgnore,
    PipelineCycle,
    PipelineNotFound,
)
from .pipe import Pipe
from .registry import pipeline, registry
from .retry import Retry
from .session import Session, get_session

__all__ = [
    # Writing pipes
    "Pipe",
    "pipeline",
    "registry",
    "Retry",
    # Running them
    "Session",
    "get_session",
    "reprocess",
    # Flow control
    "PipeContinue",
    "PipeIgnore",
    "PipeBreak",
    "PipeError",
    # Errors about datapipe itself
    "DatapipeError",
    "PipelineNotFound",
    "PipelineCycle",
    "InvalidItems",
    "InvalidOutput",
    "ItemNotSerializable",
    "ConnectionClosed",
    "DispatchFailed",
    "InvalidFetch",
    "FetchUsedDatabase",
    "ErrorThresholdExceeded",
]
