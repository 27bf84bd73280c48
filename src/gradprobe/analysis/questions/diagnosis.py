"""What happened and when: a short diagnosis of each configuration that fails (stays at chance
in a seed, diverges) or surprises (vanishes only after training), from the events
`gradprobe.analysis.events` detects, with one step-aligned figure (loss, learning rate, global
gradient norm, dead units) of the seed that shows it.

Step 6 (a) reads `context.notes["diagnosis"]`: whether vanishing is the cause or a symptom.
"""

from __future__ import annotations

from gradprobe.analysis.chance import run_at_chance
from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, h3, p
from gradprobe.analysis.events import (
    COLLAPSE,
    DEAD_UNITS,
    DIVERGENCE,
    HEALTHY,
    INSTABILITY,
    PLATEAU,
    ROOT_KINDS,
    STILL_IMPROVING,
    VANISHING,
    Event,
    run_warmup_end,
)
from gradprobe.analysis.figures.timeline import plot_timeline
from gradprobe.analysis.format import join_words
from gradprobe.analysis.questions.common import names
from gradprobe.analysis.questions.vanishing import categories
from gradprobe.analysis.seed_groups import (
    AT_CHANCE,
    DIVERGED,
    LEARNED,
    SeedGroup,
    group_seeds,
    outcome_of,
)
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.record import RunState

CAUSE_WORDS = {VANISHING: "vanishing gradients at initialisation", DEAD_UNITS: "dead units",
               INSTABILITY: "an unstable step", DIVERGENCE: "divergence",
               COLLAPSE: "a collapse to chance", PLATEAU: "a plateau",
               STILL_IMPROVING: "training still improving when it stopped"}
OUTCOME_WORDS = {AT_CHANCE: "at chance", DIVERGED: "diverged", LEARNED: "above chance"}


def needing(analysis: StudyAnalysis) -> list[Configuration]:
    """Configurations that fail or surprise."""
    later = set(categories(analysis.configurations)["later"])
    return [c for c in analysis.configurations
            if c.at_chance_runs or c in later or RunState.DIVERGED in c.states]


# ---------------------------------------------------------------------------- seeds
def seed_name(analysis: StudyAnalysis, run: str) -> str:
    """The run's seed as the report names it ("0"), or the run's name without one."""
    seed = analysis.run(run).section("train").get("seed")
    return str(seed) if seed is not None else run


def groups_of(analysis: StudyAnalysis, config: Configuration) -> list[SeedGroup]:
    """The configuration's seeds grouped by outcome and cause, failing seeds first."""
    outcomes = {run: outcome_of(run_at_chance(analysis.run(run), analysis.chance),
                                state == RunState.DIVERGED)
                for run, state in zip(config.runs, config.states, strict=True)}
    return group_seeds(config.runs, [seed_name(analysis, r) for r in config.runs],
                       analysis.diagnoses, outcomes)


def telling_run(analysis: StudyAnalysis, config: Configuration) -> str | None:
    """The seed to draw: a failing one with a cause (at chance before diverged), else one with a
    root cause, else any cause; None when no seed has one."""
    groups = [g for g in groups_of(analysis, config) if g.cause != HEALTHY]
    if not groups:
        return None
    failing = [g for g in groups if g.failing]
    rooted = [g for g in groups if g.cause in ROOT_KINDS]
    return (failing or rooted or groups)[0].runs[0]


def deciding_cause(analysis: StudyAnalysis, config: Configuration) -> str | None:
    """The cause that separates failing seeds from learning ones: the failing seeds' cause, but
    when vanishing at initialisation is there in seeds that learned too, the first root event
    the failing seeds add (None: none)."""
    groups = [g for g in groups_of(analysis, config) if g.cause != HEALTHY]
    if not groups:
        return None
    group = ([g for g in groups if g.failing] or groups)[0]
    learned_too = any(not g.failing and g.cause == group.cause for g in groups)
    if group.cause == VANISHING and group.failing and learned_too:
        roots = [kind for kind, _ in group.follow_on() if kind in ROOT_KINDS]
        return roots[0] if roots else None
    return group.cause


# ---------------------------------------------------------------------------- wording
def _point(event: Event) -> str:
    return f"step {event.step}" if event.step is not None else f"epoch {event.epoch}"


def when(entries: list[tuple[str, Event]], group_size: int, *, since: bool = False) -> str:
    """"at step 0", "at steps 54 and 83", "from step 248 in seed 0": the seeds named only when
    some of the group's seeds lack the event."""
    points = list(dict.fromkeys(_point(event) for _, event in entries))
    preposition = "from" if since else "at"
    if len(points) == 1:
        text = f"{preposition} {points[0]}"
    elif all(point.startswith("step ") for point in points):
        text = f"{preposition} steps {join_words([p.removeprefix('step ') for p in points])}"
    else:
        text = f"{preposition} {join_words(points)}"
    if len(entries) < group_size:
        seeds = [seed for seed, _ in entries]
        text += f" in seed{'s' if len(seeds) > 1 else ''} {join_words(seeds)}"
    return text


def seeds_phrase(seeds: tuple[str, ...], total: int) -> str:
    """"in every seed", "in seed 2", "in 2 of 3 seeds (0, 1)"; "" for a one-seed configuration."""
    if total <= 1:
        return ""
    if len(seeds) == total:
        return "in every seed"
    if len(seeds) == 1:
        return f"in seed {seeds[0]}"
    return f"in {len(seeds)} of {total} seeds ({', '.join(seeds)})"


def _events_clause(group: SeedGroup) -> str:
    """"first X (at step 0), then Y (at steps 54 and 83) and Z (from step 248)"."""
    size = len(group.runs)
    causes = list(zip(group.seeds, group.cause_events(), strict=False))
    since = group.cause == COLLAPSE
    first = f"first {CAUSE_WORDS[group.cause]} ({when(causes, size, since=since)})"
    then = [f"{CAUSE_WORDS[kind]} ({when(entries, size, since=kind == COLLAPSE)})"
            for kind, entries in group.follow_on()]
    return first + (f", then {join_words(then)}" if then else "")


def group_clause(group: SeedGroup, total: int, *, name_outcome: bool) -> str:
    """One group's story, lower case: "in 2 of 3 seeds (0, 1), at chance: first ..."."""
    who = seeds_phrase(group.seeds, total)
    outcome = OUTCOME_WORDS[group.outcome] if name_outcome else ""
    head = ", ".join(part for part in (who, outcome) if part)
    if group.cause == HEALTHY:
        return f"{head + ': ' if head else ''}no event was detected"
    return f"{head + ': ' if head else ''}{_events_clause(group)}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def paragraph(analysis: StudyAnalysis, config: Configuration, run: str) -> str:
    """The configuration's diagnosis over all its seeds: the lead group (failing seeds first),
    the drawn seed's cause in its own words, then the other groups; three sentences at most."""
    groups = groups_of(analysis, config)
    total = len(config.runs)
    mixed = len({g.outcome for g in groups}) > 1
    clauses = [group_clause(g, total, name_outcome=mixed) for g in groups]
    sentences = [_capital(clauses[0]) + "."]
    diagnosis = analysis.diagnoses[run]
    if diagnosis.cause_event is not None:
        drawn = f"Seed {seed_name(analysis, run)}, drawn below" if total > 1 else "Drawn below"
        sentences.append(f"{drawn}: {diagnosis.cause_event.detail}.")
    if len(clauses) > 1:
        sentences.append(_capital("; ".join(clauses[1:])) + ".")
    return " ".join(sentences)


# ---------------------------------------------------------------------------- Step 6 (a)
def _vanishing_role(cause: str, seeds: list[str], events: list[Event], who: str) -> str | None:
    """What vanishing is in these seeds, given their common cause (None: nothing to say)."""
    if cause == VANISHING:
        return f"vanishing is there at step 0{who}, before any other event"
    if cause == COLLAPSE:
        epochs = join_words(list(dict.fromkeys(str(e.epoch) for e in events)))
        return (f"a collapse to chance comes first{who} (epoch {epochs}): vanishing belongs to a "
                "network whose output never depended on its input")
    if cause in ROOT_KINDS:
        steps = when(list(zip(seeds, events, strict=False)), len(seeds))
        return f"vanishing is a symptom{who}: {CAUSE_WORDS[cause]} came first, {steps}"
    return None


def config_cause_sentence(analysis: StudyAnalysis, config: Configuration) -> str | None:
    """Step 6 (a)'s sentence for one configuration, true for every seed it covers."""
    groups = [g for g in groups_of(analysis, config) if g.cause != HEALTHY]
    by_cause: dict[str, list[SeedGroup]] = {}
    for group in groups:
        by_cause.setdefault(group.cause, []).append(group)
    total = len(config.runs)
    clauses = []
    for cause, members in by_cause.items():
        seeds = [s for g in members for s in g.seeds]
        events = [e for g in members for e in g.cause_events()]
        who = seeds_phrase(tuple(seeds), total)
        role = _vanishing_role(cause, seeds, events, f" {who}" if who else "")
        if role is not None:
            clauses.append(role)
    if not clauses:
        return None
    sentence = f"In {config.name} " + "; ".join(clauses)
    learned = [s for g in groups if not g.failing for s in g.seeds]
    if set(by_cause) == {VANISHING} and learned and len(learned) < total:
        sentence += (f", yet {seeds_phrase(tuple(learned), total).removeprefix('in ')} learned "
                     "above chance: it does not decide the outcome alone")
    elif set(by_cause) == {VANISHING}:
        sentence = sentence.replace(" vanishing is there at step 0", " vanishing is the cause: "
                                    "it is there at step 0", 1)
    return sentence + "."


def cause_or_symptom(analysis: StudyAnalysis) -> list[str]:
    """Step 6 (a)'s question: for each configuration that vanishes, did vanishing start it?"""
    found = categories(analysis.configurations)
    sentences = [config_cause_sentence(analysis, c) for c in [*found["from step 0"],
                                                              *found["later"]]]
    return [s for s in sentences if s]


# ---------------------------------------------------------------------------- key finding
def key_finding(analysis: StudyAnalysis) -> str | None:
    """What happened in the first configuration with failing seeds, and when (one step)."""
    for config in needing(analysis):
        failing = [g for g in groups_of(analysis, config) if g.failing and g.cause != HEALTHY]
        if failing:
            return finding_sentence(config.name, failing[0], len(config.runs))
    return None


def finding_sentence(name: str, group: SeedGroup, total: int) -> str:
    """"What happened in vgg_deep (at chance in 2 of 3 seeds): first X, then Y and Z (from
    step 175 in the earliest seed)."": the one number is when the last kind began."""
    outcome = OUTCOME_WORDS[group.outcome]
    if total > 1:
        outcome += f" in {len(group.runs)} of {total} seeds"
    follow_on = group.follow_on()
    last_kind, last_events = follow_on[-1] if follow_on else (group.cause, [
        (seed, event) for seed, event in zip(group.seeds, group.cause_events(), strict=False)])
    steps = [e.step for _, e in last_events if e.step is not None]
    when_text = ""
    if steps:
        earliest = " in the earliest seed" if len(group.runs) > 1 else ""
        when_text = f" ({'from' if last_kind == COLLAPSE else 'at'} step {min(steps)}{earliest})"
    words = [CAUSE_WORDS[group.cause], *(CAUSE_WORDS[kind] for kind, _ in follow_on)]
    story = f"first {words[0]}" + (f", then {join_words(words[1:])}" if len(words) > 1 else "")
    return f"What happened in {name} ({outcome}): {story}{when_text}."


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
            "surprise; each paragraph groups the seeds by what happened, failing seeds first."
            if told else
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
            blocks.append(p(paragraph(analysis, config, run)))
        if record.steps.empty:
            continue
        path = plot_timeline(record.steps, record.gradients,
                             context.figures.path(f"{run}-timeline"), name=run,
                             events=diagnosis.events,
                             num_classes=analysis.chance.classes if analysis.chance else None,
                             warmup_end=run_warmup_end(record))
        blocks.append(context.figures.block(
            path, f"{run}: loss, learning rate, global gradient norm and dead units by step",
            f"{run}: the batch loss, learning rate, global gradient norm and dead-unit share on "
            "one step axis; vertical lines mark the events."))
    context.notes["diagnosis"] = cause_or_symptom(analysis) or [
        "The events do not date a vanishing gradient before any other failure here."]
    return Section("diagnosis", "What happened and when", tuple(blocks))
