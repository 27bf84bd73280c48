"""The report as data: blocks (paragraph, table, figure, ...) grouped into sections.

Every question module returns a `Section`: its answer first, then its evidence and figures.
`SECTIONS` in `questions/__init__.py` lists them in report order, once; the templates render a
section's blocks without knowing what question it answers.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gradprobe.record import FIGURES_DIR

if TYPE_CHECKING:  # study.py imports the question-free layers only; no cycle at run time
    from gradprobe.analysis.study import StudyAnalysis


@dataclass(frozen=True)
class Block:
    """One element of the report; the templates render each kind in their own markup.

    Kinds: "p" (text), "answer" (text: the section's answer, set in bold), "formula" (text),
    "h3" (text), "list" (items), "table" (headers, rows), "figure" (path relative to the report,
    data_uri for the HTML, alt, text as caption). All strings are plain text: templates escape.
    """

    kind: str
    text: str = ""
    items: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    path: str = ""
    data_uri: str = ""
    alt: str = ""


def p(text: str) -> Block:
    return Block("p", text=text)


def answer(text: str) -> Block:
    return Block("answer", text=text)


def formula(text: str) -> Block:
    return Block("formula", text=text)


def h3(text: str) -> Block:
    return Block("h3", text=text)


def bullets(items: list[str] | tuple[str, ...]) -> Block:
    return Block("list", items=tuple(items))


def table(headers: list[str] | tuple[str, ...], rows: list[list[str]] | list[tuple[str, ...]]
          ) -> Block:
    return Block("table", headers=tuple(headers), rows=tuple(tuple(row) for row in rows))


@dataclass(frozen=True)
class Section:
    """A part of the report: `key` names it in the templates (anchors), `title` heads it.

    `main` says whether it counts towards the main body (key findings to Step 6 (e)), the part
    whose length the report limits; `appendix` sections render collapsed in the HTML.
    """

    key: str
    title: str
    blocks: tuple[Block, ...]
    main: bool = True
    appendix: bool = False
    level: int = 2  # 2: a top-level part; 3: a question within Step 6


class Figures:
    """Writes figures into study_dir/figures and hands out blocks that show them."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.written: dict[str, Path] = {}
        self._taken: set[str] = set()

    def path(self, stem: str) -> Path:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "figure"
        slug, index = base, 2
        while slug in self._taken:
            slug, index = f"{base}-{index}", index + 1
        self._taken.add(slug)
        return self.study_dir / FIGURES_DIR / f"{slug}.png"

    def block(self, path: Path, alt: str, caption: str) -> Block:
        key = path.relative_to(self.study_dir).as_posix()
        self.written[key] = path
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return Block("figure", text=caption, path=key, data_uri=f"data:image/png;base64,{data}",
                     alt=alt)


@dataclass
class Context:
    """What every question module receives: the analysis and the figure writer."""

    analysis: StudyAnalysis
    figures: Figures
    subset_layers: list[str] | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)  # sentences shared across sections
