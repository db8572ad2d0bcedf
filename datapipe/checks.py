"""System checks: every name in depends and triggers is a registered pipeline."""

from django.core import checks

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
