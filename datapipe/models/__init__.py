"""The models of datapipe: run records and chunks, reparse trackers, collected errors,
leases of scheduled runs."""

from .chunks import PipelineChunk
from .errors import PipelineError, PipelineErrorOccurrence
from .leases import PipelineLease
from .runs import PipelineRun
from .tracks import Lineage, PipelineTrack

__all__ = [
    "Lineage", "PipelineChunk", "PipelineError", "PipelineErrorOccurrence", "PipelineLease",
    "PipelineRun", "PipelineTrack",
]
