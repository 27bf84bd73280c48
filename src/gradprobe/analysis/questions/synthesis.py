"""Step 6 (e): what the experiments found, as causes and cures, each with its "because".

Each item is drawn only where the study holds its evidence: configurations that vanish from
initialisation or only after training, the depth experiment, the batch-norm and the residual
twins, and the best variant of every other experiment.
"""

from __future__ import annotations

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, bullets
from gradprobe.analysis.events import COLLAPSE, DEAD_UNITS, DIVERGENCE, INSTABILITY, VANISHING
from gradprobe.analysis.format import fmt_ratio, join_words
from gradprobe.analysis.questions import batch_norm, diagnosis, residual, vanishing
from gradprobe.analysis.questions.common import WEIGHT, centre, names, pct
from gradprobe.analysis.replicates import Verdict, compare
from gradprobe.analysis.study import StudyAnalysis

BECAUSE = {
    VANISHING: "because their per-layer gain at initialisation is below 1 and compounds over "
               "depth",
    COLLAPSE: "because their output stopped depending on their input (loss at ln(classes), the "
              "logits' gradient at its uniform value), so the gradient carried nothing to learn "
              "from",
    DEAD_UNITS: "because a ReLU that outputs zero passes no gradient back",
    INSTABILITY: "because one update far larger than the others threw the weights off",
    DIVERGENCE: "because the loss became non-finite or ran away",
}


def diagnosed_causes(analysis: StudyAnalysis) -> list[str]:
    """Configurations grouped by the cause that separates their failing seeds."""
    grouped: dict[str, list[Configuration]] = {}
    for config in diagnosis.needing(analysis):
        cause = diagnosis.deciding_cause(analysis, config)
        if cause is not None:
            grouped.setdefault(cause, []).append(config)
    return [f"{diagnosis.CAUSE_WORDS[cause].capitalize()}: {names(configs)}, {BECAUSE[cause]}."
            for cause, configs in grouped.items() if cause in BECAUSE]


def causes(analysis: StudyAnalysis) -> list[str]:
    found = vanishing.categories(analysis.configurations)
    items = diagnosed_causes(analysis)
    if not items and found["from step 0"]:
        items.append(f"Initialisation: {names(found['from step 0'])} vanish from step 0, because "
                     "their per-layer gain at initialisation is below 1 and compounds over depth.")
    if found["later"]:
        items.append(f"Training: {names(found['later'])} start healthy and vanish by the last "
                     "epoch, because the updates changed the weights and with them the gains.")
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


def better(a: Configuration, b: Configuration) -> bool:
    """`a` ends with a higher validation accuracy than `b` beyond seed-to-seed variation (with
    one seed a side, a higher one: the text then says it rests on one seed)."""
    if not (a.final_val_acc.n and b.final_val_acc.n):
        return False
    verdict = compare(a.final_val_acc, b.final_val_acc).verdict
    return verdict is Verdict.HIGHER or (verdict is Verdict.TOO_FEW_SEEDS
                                         and a.final_val_acc.centre > b.final_val_acc.centre)


def cures(analysis: StudyAnalysis) -> list[str]:
    items = []
    for plain, bn in batch_norm.twins(analysis):
        if better(bn, plain):
            items.append(f"Batch norm: {bn.name} reaches {pct(bn.final_val_acc)} against "
                         f"{pct(plain.final_val_acc)} without, because it rescales each layer's "
                         "input so the gradient no longer depends on the weights' scale, even "
                         "though it makes the step-0 gradient grow towards the input.")
    helped = [(plain, res) for plain, res, even, _ in residual.twin_facts(analysis)
              if even and better(res, plain)]
    if helped:
        items.append("Residual connections: " + join_words(
            [f"{res.name} reaches {pct(res.final_val_acc)} against {pct(plain.final_val_acc)}"
             for plain, res in helped]) + ", because the skip path carries the gradient past "
                                          "the branches' convs.")
    for experiment in analysis.experiments:
        if {"depth", "residual"} <= set(experiment.axes) or set(experiment.axes) == {"norm"}:
            continue
        ranked = sorted(((label, c) for label, c in experiment.variants if c.final_val_acc.n),
                        key=lambda v: -v[1].final_val_acc.centre)
        if len(ranked) < 2:
            continue
        (label, best), (worst_label, worst) = ranked[0], ranked[-1]
        last_best, last_worst = centre(best, WEIGHT, "last"), centre(worst, WEIGHT, "last")
        because = (f"because its last-epoch ratio stays at {fmt_ratio(last_best)} where "
                   f"{worst_label}'s is {fmt_ratio(last_worst)}"
                   if last_best is not None and last_worst is not None
                   else "though its gradient ratios do not explain why")
        items.append(f"{experiment.title}: {label} does best ({pct(best.final_val_acc)}, "
                     f"{worst_label} {pct(worst.final_val_acc)}), {because}.")
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
