"""Step 4: how do the compared models differ, and how do residual connections change the flow?

The answer names which configurations learn and which stay at chance, and each one's verdict
over step 0, the first and the last epoch; the residual paragraph sets the residual
configurations' flow beside the plain ones'.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, p, table
from gradprobe.analysis.figures import plot_depth_profiles, plot_training_curves
from gradprobe.analysis.format import fmt_ratio, join_words
from gradprobe.analysis.questions.common import (
    OUTPUT,
    WEIGHT,
    accuracy,
    accuracy_difference,
    centre,
    learns,
    pct,
    ratio,
    ratio_words,
)
from gradprobe.analysis.study import StudyAnalysis

TABLE_HEADERS = ("configuration", "n", "best val acc [95% interval]", "test acc",
                 "weight-gradient ratio, first epoch", "weight-gradient ratio, last epoch",
                 "output-gradient ratio, step 0", "verdict")


def configuration_table(configs: Sequence[Configuration], labels: Sequence[str] | None = None
                        ) -> Block:
    rows = []
    for index, config in enumerate(configs):
        outcome = config.outcome()
        rows.append([labels[index] if labels else config.name, str(len(config.runs)),
                     pct(config.best_val_acc, True) + (f", {outcome}" if outcome else ""),
                     pct(config.test_acc), ratio(config, WEIGHT, "first", True),
                     ratio(config, WEIGHT, "last", True), ratio(config, OUTPUT, "step0", True),
                     config.verdict_text()])
    return table(TABLE_HEADERS, rows)


def describe(config: Configuration, label: str | None = None, flow: bool = True) -> str:
    """"vgg_deep stays at chance (final 10.1%)" / "vgg16 learns (final 97.0%)", with the flow
    verdict when `flow`."""
    name = label or config.name
    if config.final_val_acc.n == 0:
        return f"{name} has no accuracy"
    final = pct(config.final_val_acc)
    if config.at_chance:
        state = f"stays at chance (final {final})"
    elif config.at_chance_runs:
        state = (f"stays at chance in {config.at_chance_runs} of {config.judged_runs} seeds "
                 f"(final {final} on average)")
    else:
        state = f"learns (final {final})"
    return f"{name} {state}, {config.verdict_text()}" if flow else f"{name} {state}"


def answer_sentence(configs: Sequence[Configuration]) -> str:
    if not configs:
        return "There are no runs to compare."
    return ("In the comparison, " + join_words([describe(c, flow=False) for c in configs])
            + " (validation accuracy).")


def flow_sentences(configs: Sequence[Configuration]) -> list[str]:
    return [f"Gradient flow of {c.name}: {c.verdict_text()}." for c in configs]


def residual_sentences(analysis: StudyAnalysis, configs: Sequence[Configuration]) -> list[str]:
    """How the residual configurations' flow differs from the plain ones' (Step 4's question)."""
    residual = [c for c in configs if c.model.get("residual")]
    plain = [c for c in configs if not c.model.get("residual")]
    if not residual or not plain:
        return ["The comparison holds no residual and plain configurations side by side, so it "
                "cannot show what the skips change."]
    sentences = [f"Weight-gradient ratio of {c.name} ({'residual' if c in residual else 'plain'})"
                 f": {ratio_words(c)}." for c in [*residual, *plain]]
    twins = [(a, b) for a, b in analysis.twins if a in configs and b in configs]
    if twins:
        sentences += [f"{b.name}, the residual twin of {a.name}, reaches {accuracy(b)} against "
                      f"{accuracy(a)} ({accuracy_difference(b, a)})." for a, b in twins]
    else:
        depth = [e for e in analysis.experiments if {"depth", "residual"} <= set(e.axes)]
        where = (f" The experiment \u201c{depth[0].title}\u201d (Step 5) holds twins that differ "
                 "only by the skips." if depth else "")
        sentences.append("These models differ in more than their skips (depth, width, "
                         "pooling), so the comparison shows association, not cause." + where)
    return sentences


def key_finding(analysis: StudyAnalysis) -> str | None:
    """The comparison's most telling fact: a configuration at chance, else the best accuracy."""
    stuck = [c for c in analysis.comparison if c.at_chance_runs]
    if stuck:
        c = stuck[0]
        if c.at_chance:
            return (f"{c.name} never leaves chance: its final validation accuracy is "
                    f"{pct(c.final_val_acc)}.")
        return (f"{c.name} ends at chance in {c.at_chance_runs} of {c.judged_runs} seeds (mean "
                f"final validation accuracy {pct(c.final_val_acc)}).")
    learned = sorted((c for c in analysis.comparison if learns(c)),
                     key=lambda c: -c.final_val_acc.centre)
    if learned:
        return f"{learned[0].name} reaches {pct(learned[0].final_val_acc)} validation accuracy."
    return None


def vanishing_finding(analysis: StudyAnalysis) -> str | None:
    """The first compared configuration whose weight gradient vanishes, with when."""
    for c in analysis.comparison:
        last, first = centre(c, WEIGHT, "last"), centre(c, WEIGHT, "first")
        if last is not None and first is not None and last < 0.1 <= first:
            return (f"{c.name}'s weight gradient is healthy at epoch {c.first_epoch} but "
                    f"vanishes by epoch {c.last_epoch}: first-to-last ratio {fmt_ratio(last)}.")
        step0 = centre(c, OUTPUT, "step0")
        if step0 is not None and step0 < 0.1:
            return (f"Measured at the layer outputs, {c.name}'s gradient vanishes already at "
                    f"step 0: ratio {fmt_ratio(step0)}.")
    return None


def section(context: Context) -> Section:
    analysis = context.analysis
    configs = analysis.comparison
    blocks: list[Block] = [answer(answer_sentence(configs))]
    if analysis.comparison_missing:
        blocks.append(p("The comparison lists runs the study does not hold: "
                        f"{', '.join(analysis.comparison_missing)}."))
    if not configs:
        return Section("step4", "Step 4: comparison", tuple(blocks))
    blocks.append(configuration_table(configs))
    blocks += [p(s) for s in flow_sentences(configs)]
    groups = {c.name: [analysis.run(n) for n in c.runs] for c in configs}
    metrics = [m for m in (analysis.metric, OUTPUT) if m in analysis.summaries]
    metrics = list(dict.fromkeys(metrics))
    if any(not run.gradients.empty for runs in groups.values() for run in runs):
        path = plot_depth_profiles(groups, metrics, context.figures.path("comparison-depth"),
                                   f"{analysis.comparison_title}: gradient norm against depth")
        blocks.append(context.figures.block(
            path, "depth profiles of the compared models",
            "Each conv layer's epoch-mean norm against depth, first epoch dashed, last solid; a "
            "profile falling towards depth 0 is a vanishing gradient. Triangles: shortcut "
            "convs, left out of the ratio."))
    if any(not run.metrics.empty for runs in groups.values() for run in runs):
        path = plot_training_curves(groups, context.figures.path("comparison-curves"),
                                    f"{analysis.comparison_title}: training curves",
                                    chance=analysis.chance)
        blocks.append(context.figures.block(
            path, "training curves of the compared models",
            "Loss and accuracy per epoch, train solid, validation dashed; the dotted grey line is "
            "chance."))
    blocks += [p(s) for s in residual_sentences(analysis, configs)]
    return Section("step4", "Step 4: comparison", tuple(blocks))
