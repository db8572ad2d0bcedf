"""``datapipe lineage app_label.Model PK``: what an object was made of, and what was made
of it."""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ObjectDoesNotExist, ValidationError

from ..lineage import DEPTH, describe, downstream, upstream
from .base import Subcommand, UsageError

__all__ = ["Lineage"]


class Lineage(Subcommand):
    """``datapipe lineage app_label.Model PK [--depth N] [--json]``.

    JSON: ``{"upstream": [step, ...], "downstream": node}`` as
    :func:`datapipe.lineage.upstream` and :func:`datapipe.lineage.downstream` give them
    (``as_dict()``).
    """

    name = "lineage"
    help = "What an object was made of, by which pipelines, and what pipelines made of it."
    description = ("What an object was made of (nearest first, with the pipelines) and what "
                   "pipelines made of it, as a tree, with the error rows of each object.")
    json = True

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("model", help="The object's model, as app_label.Model.")
        parser.add_argument("pk", help="The object's primary key.")
        parser.add_argument("--depth", type=int, default=DEPTH,
                            help=f"Levels of what was made of it ({DEPTH}).")

    def handle(self, model, pk, depth, **options) -> None:
        try:
            obj = apps.get_model(model)._base_manager.get(pk=pk)
        except (LookupError, ValueError, ValidationError, ObjectDoesNotExist) as exc:
            raise UsageError(f"No {model} with primary key {pk!r} (give the model as "
                             "app_label.Model).") from exc
        if depth < 0:
            raise UsageError("--depth must be 0 or more.")
        self.obj, self.tree, self.steps = obj, downstream(obj, depth), upstream(obj)
        super().handle(depth=depth, **options)

    def document(self, **options) -> dict:
        return {"upstream": [step.as_dict() for step in self.steps],
                "downstream": self.tree.as_dict()}

    def render(self, document, depth, **options) -> None:
        tree, steps = self.tree, self.steps
        name = lineage_text(tree, self.obj)
        if not steps and not tree.children:
            self.say(f"{name}: no lineage. No pipeline made it, and no pipeline processed it "
                     "into outputs.")
        if steps:
            self.say(f"{name} was made of (nearest first):")
        for step in steps:
            self.say(f"  {step.pipeline} <- {lineage_text(step, step.item)}")
        if tree.children:
            self.say(f"Made from it (at most {depth} levels):")
            self._made_from(tree, 1)

    def _made_from(self, node, level: int) -> None:
        """A downstream tree, one indented line per object."""
        made_by = f"{node.pipeline} -> " if node.pipeline else ""
        more = " ... and more (depth or size limit)" if node.truncated else ""
        self.say("  " * level + made_by + lineage_text(node, node.object) + more)
        for child in node.children:
            self._made_from(child, level + 1)


def lineage_text(node, obj) -> str:
    """An object of a lineage: label, pk, text (or "deleted"), its error rows."""
    text = f"{node.label} {node.pk} " + (f"({describe(obj)})" if obj is not None else "(deleted)")
    if node.errors:
        still_open = sum(not row.resolved for row in node.errors)
        text += f" [{len(node.errors)} error rows, {still_open} open]"
    return text
