"""Rendering the report's templates: HTML with autoescape, Markdown with every value escaped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from gradprobe.analysis.document import Section
from gradprobe.analysis.load import StudyData
from gradprobe.record import REPORT_HTML, REPORT_MD
from gradprobe.util.atomic import write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"


class _Verbatim(str):
    """Markdown the report itself wrote (a formula in a code block): not escaped again."""


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]{}#|!~])")
_ENTITY = re.compile(r"&(#?\w+;)")  # only an "&" that would start an HTML entity needs escaping


def markdown_escape(value: Any) -> str:
    """Text safe in Markdown: special characters backslash-escaped, HTML made inert."""
    if isinstance(value, _Verbatim):
        return str(value)
    text = "" if value is None else str(value)
    text = _ENTITY.sub(r"&amp;\1", text).replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.splitlines())  # a value never starts a new Markdown block


def environments() -> tuple[jinja2.Environment, jinja2.Environment]:
    """The HTML environment (autoescape on) and the Markdown one (every value escaped)."""
    loader = jinja2.FileSystemLoader(TEMPLATES)
    html = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    markdown = jinja2.Environment(loader=loader, autoescape=False, finalize=markdown_escape,
                                  undefined=jinja2.StrictUndefined, trim_blocks=True,
                                  lstrip_blocks=True, keep_trailing_newline=True)
    markdown.filters["verbatim"] = _Verbatim
    return html, markdown


def render_report(study: StudyData, sections: Sequence[Section], study_dir: Path
                  ) -> dict[str, Path]:
    """Render `sections` into report.md and report.html (atomic writes); their paths."""
    context = {
        "title": study.title,
        "study_name": study.name,
        "preset": str(study.spec.get("preset") or ""),
        "sections": list(sections),
        "html_name": REPORT_HTML,
    }
    html_env, markdown_env = environments()
    written = {"md": study_dir / REPORT_MD, "html": study_dir / REPORT_HTML}
    write_text_atomic(written["md"], markdown_env.get_template("report.md.j2").render(context))
    write_text_atomic(written["html"], html_env.get_template("report.html.j2").render(context))
    return written
