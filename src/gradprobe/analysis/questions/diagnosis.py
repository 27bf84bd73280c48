"""What happened and when: a short diagnosis of each configuration that fails (stays at chance,
diverges) or surprises (vanishes only after training), from the detected events.

The events come from `gradprobe.analysis.events` when this version of gradprobe has the
detector (`StudyAnalysis.events`); without it, the section says which configurations need a
diagnosis and that the records cannot give one. Step 6 (a) reads `context.notes["diagnosis"]`.
"""

from __future__ import annotations

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, bullets
from gradprobe.analysis.format import fmt_ratio
from gradprobe.analysis.questions.common import names
from gradprobe.analysis.questions.vanishing import categories
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.record import RunState

MAX_EVENTS = 4  # per configuration, earliest first


def needing(analysis: StudyAnalysis) -> list[Configuration]:
    """Configurations that fail or surprise."""
    later = set(categories(analysis.configurations)["later"])
    return [c for c in analysis.configurations
            if c.at_chance_runs or c in later or RunState.DIVERGED in c.states]


def event_lines(analysis: StudyAnalysis, config: Configuration) -> list[str]:
    events = sorted(analysis.events_of(config), key=lambda e: (e.step is None, e.step or 0))
    lines = []
    for event in events[:MAX_EVENTS]:
        when = f"step {event.step}" if event.step is not None else "the run"
        epoch = f" (epoch {event.epoch})" if event.epoch is not None else ""
        value = f": {fmt_ratio(event.value)}" if event.value is not None else ""
        lines.append(f"{event.run}, {when}{epoch}, {event.kind}{value}. {event.detail}".strip())
    return lines


def section(context: Context) -> Section | None:
    analysis: StudyAnalysis = context.analysis  # type: ignore[assignment]
    configs = needing(analysis)
    if not configs:
        return None
    blocks: list[Block] = []
    if not analysis.events:
        text = (f"{names(configs)} fail or surprise, but these records hold no events "
                "(instability, dead units, collapse) to say what happened and when.")
        blocks.append(answer(text))
        context.notes["diagnosis"] = [
            "Without events, these records cannot tell whether vanishing caused a failure or "
            "followed it."]
    else:
        diagnosed = [c for c in configs if analysis.events_of(c)]
        text = (f"Events explain {len(diagnosed)} of the {len(configs)} configurations that fail "
                "or surprise; the earliest events of each follow.")
        blocks.append(answer(text))
        for config in configs:
            lines = event_lines(analysis, config)
            if lines:
                blocks.append(bullets([f"{config.name}: {line}" for line in lines]))
        context.notes["diagnosis"] = [
            f"The events (see “What happened and when”) date {len(diagnosed)} failures; "
            "where an instability or dead units precede the vanishing, the vanishing is their "
            "symptom, not their cause."]
    return Section("diagnosis", "What happened and when", tuple(blocks))
