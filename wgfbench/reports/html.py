"""The tables' markdown (:func:`wgfbench.reports.tables.markdown`) as one standalone HTML page, for the HTML report.

Only the subset of markdown the tables write is rendered: ``#`` / ``##`` headings, pipe tables (a header row, a
``|---|`` rule, body rows), paragraphs, ``**bold**`` and ```code``` spans. Every character of the text is
HTML-escaped before the spans are marked up, so a method or experiment name can never inject markup. Anything
else stays as the escaped text of a paragraph, so nothing of the tables is lost.
"""

from __future__ import annotations

import html
import re

_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.4; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td:first-child { font-family: ui-monospace, monospace; white-space: nowrap; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _inline(text: str) -> str:
    """Escaped text with ``code`` and **bold** spans marked up."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_rule(line: str) -> bool:
    return bool(re.fullmatch(r"\|?(\s*:?-{3,}:?\s*\|)+\s*:?(-{3,}:?)?\s*", line.strip()))


def _table(lines: list[str]) -> list[str]:
    head, body = lines[0], [row for row in lines[1:] if not _is_rule(row)]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(head)) + "</tr></thead>"]
    out += ["<tbody>"] + ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in body]
    return [*out, "</tbody>", "</table>"]


def markdown_to_html(text: str, title: str = "wgfbench tables") -> str:
    """A standalone HTML page of ``text`` (module docstring)."""
    lines = text.splitlines()
    body: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            body.append("<p>" + " ".join(_inline(p) for p in paragraph) + "</p>")
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"(#{1,6}) (.*)", line)
        if heading:
            flush()
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            flush()
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            body += _table(lines[i:j])
            i = j
            continue
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )
