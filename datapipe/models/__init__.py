"""The models of datapipe: run records and chunks, reparse trackers, collected errors."""

from .errors import PipelineError
from .runs import PipelineChunk, PipelineRun
from .tracks import PipelineTrack

__all__ = ["PipelineChunk", "PipelineError", "PipelineRun", "PipelineTrack"]
