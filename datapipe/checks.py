"""System checks: every name in depends and triggers is a registered pipeline; every
pipeline's ``fetch`` overrides and ``concurrency`` can run."""

from django.core import checks

from .exceptions import PipelineDefinitionError
from .options import positive_int
from .registry import registry


@checks.register()
def check_pipeline_names(app_configs=None, **kwargs):
    """Report depends/triggers that name no registered pipeline."""
    problems = []
    for name, following in registry.edges().items():
        for other in [name, *following]:
            if other not in registry:
                problems.append(
                    checks.Error(
                        f"Pipeline graph names {other!r}, which is not registered "
                        f"(seen from {name!r}).",
                        hint="Check the spelling in depends=/trigger=, or that its pipes "
                        "module is in an installed app.",
                        id="datapipe.E001",
                    )
                )
    return problems


@checks.register()
def check_fetch(app_configs=None, **kwargs):
    """Report pipelines whose runs would refuse to start: ``fetch`` overrides mixing
    ``async def`` and ``def``, a ``concurrency`` that is not a positive integer."""
    problems = []
    for name in registry.names():
        cls = registry.get(name)
        try:
            cls.fetch_kind()
            positive_int(f"{cls.__qualname__}.concurrency", cls.concurrency)
        except (PipelineDefinitionError, TypeError, ValueError) as exc:
            problems.append(checks.Error(f"Pipeline {name!r}: {exc}", id="datapipe.E002"))
    return problems
