"""The models of datapipe: run records and chunks, reparse trackers, collected errors."""

from .chunks import PipelineChunk
from .errors import PipelineError
from .runs import PipelineRun
from .tracks import Lineage, PipelineTrack

__all__ = ["Lineage", "PipelineChunk", "PipelineError", "PipelineRun", "PipelineTrack"]
