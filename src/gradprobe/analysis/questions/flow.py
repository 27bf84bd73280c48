"""Step 3: how do the gradient norms of each layer evolve during training?

Answered per compared configuration from its first seed's records: how far the conv layer
nearest the input and the one nearest the output move between the first and the last epoch.
"""

from __future__ import annotations

import math

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, p
from gradprobe.analysis.figures import plot_layer_norms, plot_layer_subset
from gradprobe.analysis.figures.layers import default_subset
from gradprobe.analysis.format import fmt_ratio
from gradprobe.analysis.questions.common import comparison_or_all
from gradprobe.analysis.states import state_text
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.analysis.summary import run_epoch_means
from gradprobe.errors import InputError
from gradprobe.metrics import metric_info
from gradprobe.record import GradCol, RunState


def end_change(analysis: StudyAnalysis, config: Configuration) -> tuple[float, float] | None:
    """(input side, output side): last-epoch mean over first-epoch mean, first seed's records."""
    name = config.runs[0]
    summary = analysis.summary(name)
    if summary.first.epoch is None or summary.last.epoch is None:
        return None
    means = run_epoch_means(analysis.run(name), analysis.metric)
    indexed = means.set_index([GradCol.layer, GradCol.epoch])["mean"]
    changes = []
    for layer in (summary.first_layer, summary.last_layer):
        first = float(indexed.get((layer, summary.first.epoch), math.nan))
        last = float(indexed.get((layer, summary.last.epoch), math.nan))
        changes.append(last / first if first > 0 else math.nan)
    return changes[0], changes[1]


def changes(analysis: StudyAnalysis) -> list[tuple[Configuration, float, float]]:
    found = []
    for config in comparison_or_all(analysis):
        change = end_change(analysis, config)
        if change is not None and all(math.isfinite(c) and c > 0 for c in change):
            found.append((config, change[0], change[1]))
    return found


def answer_sentence(analysis: StudyAnalysis) -> str:
    found = changes(analysis)
    if not found:
        return "No compared run recorded two epochs of finite gradients, so nothing evolves here."
    ranked = sorted(found, key=lambda item: abs(math.log10(item[1])))
    most, least = ranked[-1], ranked[0]
    text = (f"Between the first and the last epoch the input-side layer's gradient norm changes "
            f"most in {most[0].name} (×{fmt_ratio(most[1])})")
    if least is not most:
        text += f" and least in {least[0].name} (×{fmt_ratio(least[1])})"
    return text + "."


def detail_sentence(analysis: StudyAnalysis) -> str | None:
    found = changes(analysis)
    if not found:
        return None
    return ("Last epoch over first, input side and output side (first seed): "
            + "; ".join(f"{c.name} ×{fmt_ratio(a)} and ×{fmt_ratio(b)}" for c, a, b in found)
            + ".")


def section(context: Context) -> Section:
    analysis = context.analysis
    label = metric_info(analysis.metric).label
    blocks: list[Block] = [answer(answer_sentence(analysis))]
    detail = detail_sentence(analysis)
    if detail:
        blocks.append(p(detail))
    configs = comparison_or_all(analysis)
    subset = context.subset_layers
    if subset:
        known = {str(layer) for c in configs
                 for layer in analysis.run(c.runs[0]).gradients[GradCol.layer].unique()}
        if known and not set(subset) & known:
            raise InputError(f"None of the layers {subset} was recorded by the runs plotted "
                             f"per model. Recorded layers include: "
                             f"{', '.join(sorted(known)[:15])}.")
    for config in configs:
        name = config.runs[0]
        run = analysis.run(name)
        if run.state in (RunState.FAILED, RunState.MISSING) or run.gradients.empty:
            blocks.append(p(f"{config.name} has no gradient records to draw: "
                            f"{state_text(run)}."))
            continue
        path = plot_layer_norms(run, analysis.metric, context.figures.path(f"{name}-all-layers"))
        blocks.append(context.figures.block(
            path, f"{config.name}: {label} of every layer against step",
            f"{config.name} (seed {config.seeds[0]}): every layer's {label} against optimiser "
            "step, coloured by depth; bold: the mean over each epoch. The appendix has the "
            "heat maps."))
        # the assignment asks for a subset too: the chosen layers, else first, middle and last
        chosen = ([layer for layer in subset if layer in set(run.gradients[GradCol.layer])]
                  if subset else default_subset(run, analysis.metric))
        if chosen:
            path = plot_layer_subset(run, analysis.metric, chosen,
                                     context.figures.path(f"{name}-subset"))
            which = "chosen" if subset else "the first, middle and last conv"
            blocks.append(context.figures.block(
                path, f"{config.name}: {label} of {which} layers",
                f"{config.name} (seed {config.seeds[0]}): {which} layers "
                f"({', '.join(chosen)}), per step thin, epoch means bold."))
    return Section("step3", "Step 3: gradient norms per layer during training", tuple(blocks))
