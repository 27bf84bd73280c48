"""Step 6 (e): what the experiments found, as causes and cures, each with its "because".

Each item is drawn only where the study holds its evidence: configurations that vanish from
initialisation or only after training, the depth experiment, the batch-norm and the residual
twins, and the best variant of every other experiment.
"""

from __future__ import annotations

from gradprobe.analysis.document import Block, Context, Section, answer, bullets
from gradprobe.analysis.format import fmt_ratio
from gradprobe.analysis.questions import batch_norm, residual, vanishing
from gradprobe.analysis.questions.common import WEIGHT, centre, names, pct
from gradprobe.analysis.study import StudyAnalysis


def causes(analysis: StudyAnalysis) -> list[str]:
    found = vanishing.categories(analysis.configurations)
    items = []
    if found["from step 0"]:
        items.append(f"Initialisation: {names(found['from step 0'])} vanish from step 0, because "
                     "their per-layer gain at initialisation is below 1 and compounds over depth.")
    if found["later"]:
        stuck = [c for c in found["later"] if c.at_chance]
        items.append(f"Training: {names(found['later'])} start healthy and vanish by the last "
                     "epoch, because the updates changed the weights and with them the gains"
                     + (f"; {names(stuck)} also never leave chance, so the vanishing comes with "
                        "a network whose output stopped depending on its input." if stuck
                        else "."))
    for experiment in analysis.experiments:
        if {"depth", "residual"} <= set(experiment.axes):
            plain = sorted(((experiment.axis_values(label), c) for label, c in experiment.variants
                            if experiment.axis_values(label).get("residual") == "false"),
                           key=lambda v: int(v[0].get("depth", 0)))
            if len(plain) >= 2 and plain[0][1].final_val_acc.n and plain[-1][1].final_val_acc.n:
                (a, low), (b, high) = plain[0], plain[-1]
                if high.final_val_acc.centre < low.final_val_acc.centre:
                    items.append(f"Depth without skips: the plain net's final accuracy falls "
                                 f"from {pct(low.final_val_acc)} at depth {a['depth']} to "
                                 f"{pct(high.final_val_acc)} at depth {b['depth']}, because each "
                                 "added layer multiplies the gradient by one more gain.")
    return items


def cures(analysis: StudyAnalysis) -> list[str]:
    items = []
    for plain, bn in batch_norm.twins(analysis):
        if bn.best_val_acc.n and plain.best_val_acc.n and (
                bn.best_val_acc.centre > plain.best_val_acc.centre):
            items.append(f"Batch norm: {bn.name} reaches {pct(bn.best_val_acc)} against "
                         f"{pct(plain.best_val_acc)} without, because it rescales each layer's "
                         "input so the gradient no longer depends on the weights' scale, even "
                         "though it makes the step-0 gradient grow towards the input.")
    for plain, res, even, better in residual.twin_facts(analysis):
        if better and even:
            items.append(f"Residual connections: {res.name} reaches {pct(res.best_val_acc)} "
                         f"against {pct(plain.best_val_acc)} for {plain.name}, because the skip "
                         "path carries the gradient past the branches' convs.")
    for experiment in analysis.experiments:
        if {"depth", "residual"} <= set(experiment.axes) or set(experiment.axes) == {"norm"}:
            continue
        ranked = sorted(((label, c) for label, c in experiment.variants if c.best_val_acc.n),
                        key=lambda v: -v[1].best_val_acc.centre)
        if len(ranked) < 2:
            continue
        (label, best), (worst_label, worst) = ranked[0], ranked[-1]
        last_best, last_worst = centre(best, WEIGHT, "last"), centre(worst, WEIGHT, "last")
        because = (f"because its last-epoch ratio stays at {fmt_ratio(last_best)} where "
                   f"{worst_label}'s is {fmt_ratio(last_worst)}"
                   if last_best is not None and last_worst is not None
                   else "though its gradient ratios do not explain why")
        items.append(f"{experiment.title}: {label} does best ({pct(best.best_val_acc)}, "
                     f"{worst_label} {pct(worst.best_val_acc)}), {because}.")
    return items


def section(context: Context) -> Section:
    analysis = context.analysis
    found_causes, found_cures = causes(analysis), cures(analysis)
    lead = (f"The study points to {len(found_causes)} "
            f"cause{'s' if len(found_causes) != 1 else ''} and {len(found_cures)} "
            f"cure{'s' if len(found_cures) != 1 else ''}, each with the measurement behind it.")
    blocks: list[Block] = [answer(lead)]
    if found_causes:
        blocks.append(bullets([f"Cause. {item}" for item in found_causes]))
    if found_cures:
        blocks.append(bullets([f"Cure. {item}" for item in found_cures]))
    return Section("experiments", "(e) What the experiments found", tuple(blocks), level=3)
