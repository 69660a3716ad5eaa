"""Markdown tables as HTML pages the Snakemake report shows inline.

The report displays an HTML file in place and offers anything else (our .md tables) only as a
download. Every table writer therefore writes its markdown and, beside it, the same content as
one small self-contained HTML page (``write_markdown_page``). The converter covers what our
writers emit: headings, pipe tables, bullet lists, paragraphs, links, `code` and **bold**.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

from negfree.common.io import atomic_write_text

STYLE = ("body{font:14px/1.45 system-ui,sans-serif;margin:1em 2em;color:#222}"
         "table{border-collapse:collapse;margin:.6em 0;font-size:13px}"
         "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
         "th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}"
         "code{background:#f4f4f4;padding:0 3px}h1,h2,h3{margin:.8em 0 .3em}")


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)


def _cells(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)]


def _is_rule(line: str) -> bool:
    return bool(re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", line.strip()))


def markdown_to_html(md: str, title: str = "") -> str:
    lines, body, i = md.splitlines(), [], 0
    para: list[str] = []

    def flush():
        if para:
            body.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            flush()
            head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(line))
            rows, i = [], i + 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            flush()
            n = len(m.group(1))
            body.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
            i += 1
        elif re.match(r"\s*[-*]\s+", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                text = re.sub(r"^\s*[-*]\s+", "", lines[i])
                items.append(f"<li>{_inline(text)}</li>")
                i += 1
            body.append(f"<ul>{''.join(items)}</ul>")
        else:
            para.append(line.strip())
            i += 1
    flush()
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write_markdown_page(path, md: str):
    """Write ``md`` to ``path`` (.md) and the same content as HTML beside it (.html)."""
    path = Path(path)
    out = atomic_write_text(path, md)
    atomic_write_text(path.with_suffix(".html"), markdown_to_html(md, title=path.stem))
    return out
