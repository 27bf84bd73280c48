"""Step 5: what each further experiment shows, one subsection each, answer first.

An experiment's answer says whether its axis changed the outcome (accuracy against chance) and
the gradient flow (the verdict over step 0, the first and the last epoch), with the best and
the worst variant's numbers. The depth experiment (axes depth and residual) is drawn as He et
al. (2016) Fig. 1: accuracy against depth, plain beside residual.
"""

from __future__ import annotations

import math

import numpy as np

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, h3, p
from gradprobe.analysis.figures import plot_experiment
from gradprobe.analysis.figures.compare import SMALL_MULTIPLES_ABOVE, plot_experiment_grid
from gradprobe.analysis.figures.depth import plot_depth_experiment
from gradprobe.analysis.format import format_value
from gradprobe.analysis.questions.common import accuracy_difference, beyond_seed_variation, pct
from gradprobe.analysis.questions.comparison import configuration_table, describe
from gradprobe.analysis.study import Experiment, StudyAnalysis
from gradprobe.record import Col

IMPROVING = 0.01  # validation accuracy still rising by more than this over the last epoch


def still_improving(analysis: StudyAnalysis, config: Configuration) -> bool:
    """Most seeds' validation accuracy rose over the last epoch: training had not finished."""
    rising = 0
    for name in config.runs:
        val = analysis.run(name).metrics[Col.val_acc].to_numpy(dtype="float64")
        val = val[np.isfinite(val)]
        rising += val.size >= 2 and val[-1] - val[-2] > IMPROVING
    return 2 * rising > len(config.runs)


def answer_sentence(experiment: Experiment) -> str:
    if {"depth", "residual"} <= set(experiment.axes):
        sentences = depth_sentences(experiment)
        if sentences:
            return sentences[0]
    variants = [(label, c) for label, c in experiment.variants if c.final_val_acc.n]
    if not variants:
        return "No variant of this experiment has a result."
    ranked = sorted(variants, key=lambda v: -v[1].final_val_acc.centre)
    (best_label, best), (worst_label, worst) = ranked[0], ranked[-1]
    verdicts = {c.verdict_text() for _, c in variants}
    chance = {c.at_chance for _, c in variants}
    changes = len(verdicts) > 1 or len(chance) > 1
    # a verdict that changes while the accuracies overlap over seeds is only part of a yes
    lead = ("Yes" if beyond_seed_variation(best, worst) else "Partly") if changes else "No"
    if len(variants) == 1:
        return f"Only one variant ran: {describe(best, best_label, flow=False)}."
    flow = ("the gradient-flow verdict changes with it (table)" if len(verdicts) > 1
            else f"every variant is {verdicts.pop()}")
    return (f"{lead}: {describe(best, best_label, flow=False)}, while "
            f"{describe(worst, worst_label, flow=False)} ({accuracy_difference(best, worst)}); "
            f"{flow}.")


def _depth_cells(experiment: Experiment) -> dict[tuple[int, bool], Configuration]:
    cells = {}
    for label, config in experiment.variants:
        axes = experiment.axis_values(label)
        try:
            cells[(int(axes["depth"]), axes["residual"].lower() == "true")] = config
        except (KeyError, ValueError):
            continue
    return cells


def depth_sentences(experiment: Experiment) -> list[str]:
    """He et al.'s question: does the plain net degrade with depth where its twin does not?"""
    cells = _depth_cells(experiment)
    depths = sorted({d for d, _ in cells})
    if len(depths) < 2:
        return []
    deepest, shallowest = depths[-1], depths[0]
    corners = [cells.get((depth, residual)) for residual in (False, True)
               for depth in (shallowest, deepest)]
    if any(c is None or not c.final_val_acc.n for c in corners):
        return []
    plain_low, plain_high, res_low, res_high = (c for c in corners if c is not None)
    degrades = plain_high.final_val_acc.centre < plain_low.final_val_acc.centre
    gap = res_high.final_val_acc.centre - plain_high.final_val_acc.centre
    lead = "Yes" if degrades and gap > 0 else "Partly" if degrades or gap > 0 else "No"
    return [f"{lead}: from depth {shallowest} to {deepest} the plain net's final accuracy goes "
            f"from {pct(plain_low.final_val_acc)} to {pct(plain_high.final_val_acc)}, the "
            f"residual net's from {pct(res_low.final_val_acc)} to {pct(res_high.final_val_acc)} "
            f"({accuracy_difference(res_high, plain_high)} at depth {deepest})."]


def experiment_blocks(context: Context, experiment: Experiment) -> list[Block]:
    analysis = context.analysis
    blocks: list[Block] = [h3(experiment.title), answer(answer_sentence(experiment))]
    if experiment.question:
        axes = "; ".join(f"{key} ∈ {{{', '.join(format_value(v) for v in values)}}}"
                         if isinstance(values, (list, tuple)) else f"{key} = {values}"
                         for key, values in experiment.axes.items())
        blocks.append(p(f"Question: {experiment.question} Axes: {axes}."))
    if experiment.missing:
        blocks.append(p(f"Runs listed but not in the study: {', '.join(experiment.missing)}."))
    if not experiment.variants:
        return [*blocks, p("None of its runs is in the study.")]
    configs = [c for _, c in experiment.variants]
    blocks.append(configuration_table(configs, [label for label, _ in experiment.variants]))
    runs = {c.name: [analysis.run(n) for n in c.runs] for c in configs}
    cells = _depth_cells(experiment) if {"depth", "residual"} <= set(experiment.axes) else {}
    if cells:
        path = plot_depth_experiment(cells, runs, analysis.metric, analysis.chance,
                                     context.figures.path(f"experiment-{experiment.name}"),
                                     experiment.title)
        blocks.append(context.figures.block(
            path, f"{experiment.title}: profiles per depth and accuracy against depth",
            "One panel per depth: plain (blue) and residual (green) depth profiles at the first "
            "(dashed) and last (solid) epoch; last panel: final validation accuracy against "
            "depth (dots: seeds)."))
    elif any(not run.gradients.empty or not run.metrics.empty
             for group in runs.values() for run in group):
        labelled = {label: runs[c.name] for label, c in experiment.variants}
        many = len(labelled) > SMALL_MULTIPLES_ABOVE
        draw = plot_experiment_grid if many else plot_experiment
        path = draw(labelled, analysis.metric,
                    context.figures.path(f"experiment-{experiment.name}"), experiment.title,
                    chance=analysis.chance)
        blocks.append(context.figures.block(
            path, f"{experiment.title}: depth profiles and training curves",
            ("One column per variant: its depth profile at the first (dashed) and last (solid) "
             "epoch above its train (solid) and validation (dashed) accuracy; grey: chance."
             if many else
             "Top: depth profile at the first (dashed) and last (solid) epoch; below: loss and "
             "accuracy, train solid, validation dashed, chance dotted grey.")))
    improving = [label for label, c in experiment.variants if still_improving(analysis, c)]
    if improving and 2 * len(improving) > len(experiment.variants):
        blocks.append(p(f"Validation accuracy was still rising at the last epoch in "
                        f"{len(improving)} of {len(experiment.variants)} variants, so the "
                        "ranking measures speed of learning, not where training ends."))
    return blocks


def key_finding(experiment: Experiment) -> str | None:
    """One number: the accuracy gap between the experiment's best and worst variant."""
    variants = sorted(((label, c) for label, c in experiment.variants if c.final_val_acc.n),
                      key=lambda v: -v[1].final_val_acc.centre)
    if len(variants) < 2:
        return None
    (best_label, best), (worst_label, worst) = variants[0], variants[-1]
    gap = 100 * (best.final_val_acc.centre - worst.final_val_acc.centre)
    if math.isnan(gap):
        return None
    stuck = " (at chance)" if worst.at_chance else ""
    return (f"{experiment.title}: {best_label} beats {worst_label}{stuck} by {gap:.0f} points "
            "of validation accuracy.")


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = []
    for experiment in analysis.experiments:
        blocks += experiment_blocks(context, experiment)
    if not blocks:
        blocks = [answer("The study defines no further experiments.")]
    return Section("step5", "Step 5: further experiments", tuple(blocks))
