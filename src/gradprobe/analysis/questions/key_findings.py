"""Key findings: at most eight plain sentences, one number each, picked from the questions'
own key-finding sentences in the order the report answers them."""

from __future__ import annotations

from gradprobe.analysis.document import Context, Section, bullets, p
from gradprobe.analysis.questions import (
    batch_norm,
    comparison,
    diagnosis,
    experiments,
    residual,
    why,
)
from gradprobe.analysis.study import StudyAnalysis

MAX_KEY_FINDINGS = 8


def sentences(analysis: StudyAnalysis) -> list[str]:
    found = [comparison.key_finding(analysis), comparison.vanishing_finding(analysis),
             diagnosis.key_finding(analysis), batch_norm.key_finding(analysis),
             residual.key_finding(analysis)]
    # batch norm and depth/residual have their own key findings above
    found += [experiments.key_finding(e) for e in analysis.experiments
              if set(e.axes) != {"norm"} and not {"depth", "residual"} <= set(e.axes)]
    found.append(why.key_finding(analysis))
    unique = list(dict.fromkeys(s for s in found if s))
    return unique[:MAX_KEY_FINDINGS]


def section(context: Context) -> Section:
    analysis = context.analysis
    items = sentences(analysis)
    block = bullets(items) if items else p("No run finished, so there is nothing to summarise.")
    return Section("key_findings", "Key findings", (block,))
