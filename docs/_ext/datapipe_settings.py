"""The ``datapipe-settings`` directive: the settings reference, read from
``datapipe/conf.py`` (each key of ``DEFAULTS``, its default and the comment above it), so
that the documentation lists every setting as the code defines it."""

from __future__ import annotations

import ast
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

CONF = Path(__file__).resolve().parents[2] / "datapipe" / "conf.py"


def read_settings(path: Path = CONF) -> list[tuple[str, str, list[str]]]:
    """``(key, default as written, comment lines)`` for each key of ``DEFAULTS``."""
    source = path.read_text()
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(getattr(target, "id", None) == "DEFAULTS" for target in node.targets)):
            break
    else:
        raise ValueError(f"No DEFAULTS dict in {path}")
    found = []
    for key, value in zip(node.value.keys, node.value.values, strict=True):
        comment, row = [], key.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            comment.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        found.append((key.value, ast.get_source_segment(source, value), comment))
    return found


class SettingsDirective(SphinxDirective):
    """``.. datapipe-settings::``: a definition list of every ``DATAPIPE`` key."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(CONF))
        text = []
        for key, default, comment in read_settings():
            text += [f"``{key}`` (default ``{default}``)",
                     *(f"    {line}" for line in comment or ["Not documented."]), ""]
        container = nodes.container()
        self.state.nested_parse(StringList(text, source=str(CONF)), self.content_offset,
                                container)
        return container.children


def setup(app):
    """Register the directive (a Sphinx extension's entry point)."""
    app.add_directive("datapipe-settings", SettingsDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
