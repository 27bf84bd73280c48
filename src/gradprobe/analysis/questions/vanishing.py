"""Step 6 (a): do the plots show the vanishing-gradient problem?

Answered for every configuration at step 0 (the initialisation), the first and the last epoch,
with both gradient metrics (a point is "vanishing" when either metric's first-to-last ratio is
below 0.1): yes, no, or partly, naming when. A configuration at chance is said to be so, since
its gradients are those of a network that never learned.
"""

from __future__ import annotations

import math

from gradprobe.analysis.configurations import METRIC_WORDS, Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, p
from gradprobe.analysis.figures.overview import plot_overview
from gradprobe.analysis.format import fmt_ratio, join_words
from gradprobe.analysis.questions.common import OUTPUT, names
from gradprobe.analysis.replicates import ratio_estimate
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.analysis.summary import NO_VERDICT
from gradprobe.record import GradCol

WEIGHT_DISTANCE = "weight_distance"  # the trainer's ||W - W0|| / ||W0|| (gradprobe.metrics)


def categories(configs: list[Configuration]) -> dict[str, list[Configuration]]:
    """When each configuration's gradient vanishes, if ever."""
    found: dict[str, list[Configuration]] = {"from step 0": [], "later": [], "recovered": [],
                                             "never": [], "no data": []}
    for config in configs:
        verdicts = config.verdicts
        known = [v for v in verdicts.values() if v != NO_VERDICT]
        if not known:
            found["no data"].append(config)
        elif verdicts["step0"] == "vanishing":
            found["from step 0"].append(config)
        elif verdicts["last"] == "vanishing":
            found["later"].append(config)
        elif "vanishing" in known:
            found["recovered"].append(config)
        else:
            found["never"].append(config)
    return found




def listed(configs: list[Configuration], point: str) -> str:
    """Names, each with the metric that vanishes at `point` when only one of the two does."""
    parts = []
    for config in configs:
        metrics = [m for m in METRIC_WORDS if m in config.ratios
                   and config.point_verdict(point, m) == "vanishing"]
        measured = [m for m in METRIC_WORDS if m in config.ratios]
        only = f" ({METRIC_WORDS[metrics[0]]})" if len(metrics) == 1 < len(measured) else ""
        parts.append(config.name + only)
    return join_words(parts)


def answer_sentence(analysis: StudyAnalysis) -> str:
    compared = categories(analysis.comparison or analysis.configurations)
    everywhere = categories(analysis.configurations)
    vanishing = [c for key in ("from step 0", "later", "recovered") for c in everywhere[key]]
    if not vanishing:
        if everywhere["never"]:
            return ("No: no configuration's first-to-last ratio falls below 0.1 at step 0, the "
                    "first or the last epoch, with either gradient metric.")
        return "No run recorded usable gradients, so this study cannot say."
    judged = sum(len(v) for k, v in compared.items() if k != "no data")
    hit = sum(len(compared[k]) for k in ("from step 0", "later", "recovered"))
    lead = "Yes" if judged and hit == judged else "Partly" if hit else "Not in the compared models"
    parts = []
    if compared["from step 0"]:
        parts.append(f"from initialisation in {listed(compared['from step 0'], 'step0')}")
    if compared["later"]:
        parts.append("not at initialisation, but by the last epoch in "
                     f"{listed(compared['later'], 'last')}")
    if compared["recovered"]:
        parts.append(f"early, then no longer, in {names(compared['recovered'])}")
    if compared["never"]:
        parts.append(f"never in {names(compared['never'])}")
    return (f"{lead}: among the compared models, the gradient vanishes " + "; ".join(parts)
            + f"; across the study, {len(vanishing)} of {len(analysis.configurations)} "
            "configurations vanish at some point.")


def study_sentences(analysis: StudyAnalysis) -> list[str]:
    everywhere = categories(analysis.configurations)
    compared = set(analysis.comparison)
    sentences = []
    for key, words in (("from step 0", "From step 0"),
                       ("later", "Not at step 0 but by the last epoch"),
                       ("recovered", "Vanishing at first, then no longer")):
        rest = [c for c in everywhere[key] if c not in compared]
        if rest:
            sentences.append(f"{words}, elsewhere in the study: {names(rest)}.")
    stuck = [c for c in analysis.configurations if c.at_chance]
    if stuck:
        sentences.append(f"At chance in every seed: {names(stuck)}."
                         + ("" if analysis.diagnoses else
                            " Their gradients are those of networks that never learned, so their"
                            " vanishing may be a symptom of the failure rather than its cause."))
    return sentences


def learning_sentence(analysis: StudyAnalysis) -> str | None:
    """Do the layers nearest the input learn slowest? Weight movement ||W - W0|| / ||W0||."""
    parts = []
    for config in analysis.comparison:
        firsts, lasts = [], []
        for name in config.runs:
            summary, run = analysis.summary(name), analysis.run(name)
            rows = run.gradients.loc[run.gradients[GradCol.metric] == WEIGHT_DISTANCE]
            if rows.empty or summary.first_layer is None:
                continue
            at = rows.loc[rows[GradCol.step] == rows[GradCol.step].max()].set_index(GradCol.layer)
            try:
                firsts.append(float(at.at[summary.first_layer, GradCol.value]))
                lasts.append(float(at.at[summary.last_layer, GradCol.value]))
            except KeyError:
                continue
        first, last = ratio_estimate(firsts), ratio_estimate(lasts)
        if first.n and last.n and last.centre > 0 and math.isfinite(first.centre):
            parts.append(f"{fmt_ratio(first.centre / last.centre)}× in {config.name}"
                         + (" (at chance: movement without learning)" if config.at_chance else ""))
    if not parts:
        return None
    return ("Do the input-side layers learn slowest? By the last epoch the input-side conv "
            "layer's weights moved, relative to their initial norm, " + join_words(parts)
            + " as far as the output side's.")


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = [answer(answer_sentence(analysis))]
    blocks += [p(s) for s in study_sentences(analysis)]
    diagnosis = context.notes.get("diagnosis")
    if diagnosis:
        blocks.append(p(" ".join(diagnosis)))
    learning = learning_sentence(analysis)
    if learning:
        blocks.append(p(learning))
    if OUTPUT in analysis.summaries and analysis.metric != OUTPUT and analysis.configurations:
        path = plot_overview(analysis.configurations, analysis.chance, OUTPUT,
                             context.figures.path("overview-output-gradient"),
                             "The same, measured at the layers' outputs (output gradient)")
        blocks.append(context.figures.block(
            path, "output-gradient ratio of every configuration",
            "As the headline figure, with the gradient at each layer's output, the quantity the "
            "assignment's hook measures."))
    return Section("answer", "(a) Do the plots show the vanishing-gradient problem?",
                   tuple(blocks), level=3)
