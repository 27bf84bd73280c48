"""One module per question of the assignment, each returning its `Section` (answer first).

`SECTIONS` is the one list of the report's parts, in report order; `build_sections` calls them.
To add a question, write its module with `section(context) -> Section | None` and list it here.
"""

from __future__ import annotations

from collections.abc import Callable

from gradprobe.analysis.document import Context, Section

SectionBuilder = Callable[[Context], "Section | None"]


def _sections() -> list[tuple[str, SectionBuilder]]:
    from gradprobe.analysis.questions import (
        appendix,
        batch_norm,
        comparison,
        diagnosis,
        experiments,
        flow,
        key_findings,
        overview,
        residual,
        synthesis,
        vanishing,
        why,
    )

    def step6(_: Context) -> Section:
        return Section("step6", "Step 6: analysis", ())

    return [
        ("overview", overview.section),  # the first screen: setup, headline figure, results
        ("key_findings", key_findings.section),
        ("step3", flow.section),
        ("step4", comparison.section),
        ("step5", experiments.section),
        ("diagnosis", diagnosis.section),  # what happened and when, from the events
        ("step6", step6),
        ("answer", vanishing.section),  # (a), reads the diagnosis note
        ("why_vanish", why.section),  # (b)
        ("why_residual", residual.section),  # (c)
        ("batch_norm", batch_norm.section),  # (d)
        ("experiments", synthesis.section),  # (e)
        ("appendix", appendix.section),
    ]


SECTIONS = (*(key for key, _ in _sections()), "references")


def build_sections(context: Context, dataset: str) -> list[Section]:
    """Every section in report order; (f) lists what the others cite, so it comes last."""
    from gradprobe.analysis.questions import references

    built = [section for _, builder in _sections() if (section := builder(context)) is not None]
    cited = references.section(context, built, dataset)
    at = next((i for i, s in enumerate(built) if s.key == "appendix"), len(built))
    return [*built[:at], cited, *built[at:]]
