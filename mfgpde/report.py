"""Small helpers for the Markdown reports of validation studies."""

from __future__ import annotations

import os

from .io import atomic_write


def markdown_table(headers, rows, fmt="{:.3g}"):
    """A Markdown table; floats are formatted with ``fmt``."""
    def cell(v):
        return fmt.format(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path, title, sections):
    """Write ``# title`` and ``(heading, text)`` sections to a Markdown file atomically."""
    text = [f"# {title}", ""]
    for heading, body in sections:
        text += [f"## {heading}", "", body.strip(), ""]

    def w(tmp):
        with open(tmp, "w") as fh:
            fh.write("\n".join(text))

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return atomic_write(path, w, ".md")
