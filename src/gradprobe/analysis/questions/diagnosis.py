"""What happened and when: a short diagnosis of each configuration that fails (stays at chance
in a seed, diverges) or surprises (vanishes only after training), from the events
`gradprobe.analysis.events` detects, with one step-aligned figure (loss, learning rate, global
gradient norm, dead units) of the seed that shows it.

Step 6 (a) reads `context.notes["diagnosis"]`: whether vanishing is the cause or a symptom.
"""

from __future__ import annotations

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, h3, p
from gradprobe.analysis.events import (
    COLLAPSE,
    DEAD_UNITS,
    DIVERGENCE,
    HEALTHY,
    INSTABILITY,
    ROOT_KINDS,
    VANISHING,
    Diagnosis,
    warmup_end_step,
)
from gradprobe.analysis.figures.timeline import plot_timeline
from gradprobe.analysis.questions.common import names
from gradprobe.analysis.questions.vanishing import categories
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.record import RunState

CAUSE_WORDS = {VANISHING: "vanishing gradients at initialisation", DEAD_UNITS: "dead units",
               INSTABILITY: "an unstable step", DIVERGENCE: "divergence",
               "collapse": "a collapse to chance", "plateau": "a plateau",
               "still_improving": "training stopped while still improving"}


def needing(analysis: StudyAnalysis) -> list[Configuration]:
    """Configurations that fail or surprise."""
    later = set(categories(analysis.configurations)["later"])
    return [c for c in analysis.configurations
            if c.at_chance_runs or c in later or RunState.DIVERGED in c.states]


def telling_run(analysis: StudyAnalysis, config: Configuration) -> str | None:
    """The seed whose diagnosis says most: a root cause first, then any cause, else none."""
    found = [analysis.diagnoses[r] for r in config.runs if r in analysis.diagnoses]
    found = [d for d in found if d.cause != HEALTHY]
    if not found:
        return None
    rooted = [d for d in found if d.cause in ROOT_KINDS]
    return (rooted or found)[0].run


def cause_or_symptom(analysis: StudyAnalysis) -> list[str]:
    """Step 6 (a)'s question: for each configuration that vanishes, did vanishing start it?"""
    sentences = []
    found = categories(analysis.configurations)
    for config in [*found["from step 0"], *found["later"]]:
        run = telling_run(analysis, config)
        if run is None:
            continue
        diagnosis = analysis.diagnoses[run]
        if diagnosis.cause == VANISHING:
            sentences.append(f"In {config.name} vanishing is the cause: it is there at step 0, "
                             "before any other event.")
        elif diagnosis.cause == COLLAPSE and diagnosis.cause_event is not None:
            sentences.append(f"In {config.name} a collapse to chance comes first (epoch "
                             f"{diagnosis.cause_event.epoch}): its vanishing belongs to a "
                             "network whose output never depended on its input.")
        elif diagnosis.cause in ROOT_KINDS and diagnosis.cause_event is not None:
            step = diagnosis.cause_event.step
            sentences.append(f"In {config.name} vanishing is a symptom: "
                             f"{CAUSE_WORDS[diagnosis.cause]} came first"
                             + (f", at step {step}" if step is not None else "") + ".")
    return sentences


def _paragraph(config: Configuration, diagnosis: Diagnosis) -> str:
    cause = CAUSE_WORDS.get(diagnosis.cause, diagnosis.cause)
    return f"{diagnosis.run}: {cause}; {diagnosis.text}."


def section(context: Context) -> Section | None:
    analysis = context.analysis
    configs = needing(analysis)
    if not configs:
        return None
    if not analysis.diagnoses:
        text = (f"{names(configs)} fail or surprise, but these records hold no events "
                "(instability, dead units, collapse) to say what happened and when.")
        context.notes["diagnosis"] = [
            "Without events, these records cannot tell whether vanishing caused a failure or "
            "followed it."]
        return Section("diagnosis", "What happened and when", (answer(text),))
    told = [c for c in configs if telling_run(analysis, c) is not None]
    lead = (f"The events explain {len(told)} of the {len(configs)} configurations that fail or "
            "surprise; each paragraph names the cause first, then what followed." if told else
            f"No detected event explains {names(configs)}: their records show no instability, "
            "dead units, collapse, divergence or plateau.")
    blocks: list[Block] = [answer(lead)]
    for config in configs:
        run = telling_run(analysis, config) or config.runs[0]
        diagnosis = analysis.diagnoses.get(run)
        record = analysis.run(run)
        if diagnosis is None or (diagnosis.cause == HEALTHY and record.steps.empty):
            continue
        blocks.append(h3(config.name))
        if diagnosis.cause != HEALTHY:
            blocks.append(p(_paragraph(config, diagnosis)))
        if record.steps.empty:
            continue
        train = record.section("train")
        path = plot_timeline(record.steps, record.gradients,
                             context.figures.path(f"{run}-timeline"), name=run,
                             events=diagnosis.events,
                             num_classes=analysis.chance.classes if analysis.chance else None,
                             warmup_end=warmup_end_step(record.steps,
                                                        train.get("warmup_epochs") or 0.0))
        blocks.append(context.figures.block(
            path, f"{run}: loss, learning rate, global gradient norm and dead units by step",
            f"{run}: the batch loss, learning rate, global gradient norm and dead-unit share on "
            "one step axis; vertical lines mark the events."))
    context.notes["diagnosis"] = cause_or_symptom(analysis) or [
        "The events do not date a vanishing gradient before any other failure here."]
    return Section("diagnosis", "What happened and when", tuple(blocks))
