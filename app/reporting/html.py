"""A self-contained HTML report: a metrics table and PNG pictures inlined as base64."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; text-align: left; }
td.value { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em; }
figcaption { text-align: center; font-size: 0.9em; color: #555; }
"""


def _table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "".join(
        f'<tr><th>{escape(name)}</th><td class="value">{escape(value)}</td></tr>'
        for name, value in rows
    )
    return f"<table>{cells}</table>"


def _figure(caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def html_report(
    title: str,
    about: Sequence[tuple[str, str]],
    metrics: Sequence[tuple[str, str]],
    images: Mapping[str, bytes],
) -> str:
    """One HTML page: `about` (run details) and `metrics` tables, then the captioned images."""
    figures = "\n".join(_figure(caption, png) for caption, png in images.items())
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n<body>\n<h1>{escape(title)}</h1>\n"
        f"<h2>Run</h2>\n{_table(about)}\n<h2>Metrics</h2>\n{_table(metrics)}\n"
        f"<h2>Pictures</h2>\n{figures}\n</body></html>\n"
    )
