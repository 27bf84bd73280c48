"""Sentences about configurations (runs that differ only by seed): every difference between two
of them is called by `replicates.compare` (Welch's t-test at 0.05, at least two seeds a side),
otherwise it is said to be within seed-to-seed variation, or not separable from noise."""

from __future__ import annotations

from collections.abc import Sequence

from gradprobe.analysis.format import join_words
from gradprobe.analysis.groups import ConfigurationSummary, max_seeds
from gradprobe.analysis.replicates import Estimate, Verdict, compare, format_estimate
from gradprobe.analysis.summary import VERDICT_THRESHOLDS, verdict

SINGLE_SEED_NOTE = ("Each configuration ran with one seed, so no difference between "
                    "configurations here can be separated from seed-to-seed noise; run the "
                    "study with `seeds: [0, 1, 2]` to test them.")


def difference(first: str, a: Estimate, second: str, b: Estimate, *, what: str,
               percent: bool = False) -> str:
    """"{what}: A x [..] (n=3) against B y [..] (n=3), higher beyond seed-to-seed variation
    (Welch p = 0.004)" -- or within that variation, or not separable with one seed."""
    text = (f"{what}: {first} {format_estimate(a, percent=percent)} against {second} "
            f"{format_estimate(b, percent=percent)}")
    if a.n == 0 or b.n == 0:
        return text + "."
    result = compare(a, b)
    if a.log_scale:
        size = f"{result.factor:.3g}×"
    else:
        size = (f"{100 * result.factor:+.1f} points" if percent else f"{result.factor:+.3g}")
    if result.verdict is Verdict.TOO_FEW_SEEDS:
        return (f"{text}; the difference ({size}) cannot be separated from noise with fewer than "
                "two seeds a side.")
    if result.verdict is Verdict.WITHIN_NOISE:
        return (f"{text}; the difference ({size}) is within seed-to-seed variation "
                f"(Welch p = {result.p_value:.2g}).")
    return (f"{text}; {first} is {result.verdict.value} ({size}), beyond seed-to-seed "
            f"variation (Welch p = {result.p_value:.2g}).")


def _flow_verdict(group: ConfigurationSummary) -> str:
    return verdict(group.ratio_first.centre if group.ratio_first.n else None)


def accuracy_sentences(groups: Sequence[ConfigurationSummary]) -> list[str]:
    """Best validation accuracy over seeds, best first, and whether the best beats the next."""
    scored = sorted((g for g in groups if g.best_val_acc.n), key=lambda g: -g.best_val_acc.centre)
    if not scored:
        return []
    sentences = [("Best validation accuracy, mean over seeds [95% interval], highest first: "
                  + join_words([f"{g.name} {format_estimate(g.best_val_acc, percent=True)}"
                                for g in scored]) + ".")]
    if len(scored) > 1:
        top, second = scored[0], scored[1]
        sentences.append(difference(top.name, top.best_val_acc, second.name,
                                    second.best_val_acc, what="The top two",
                                    percent=True))
    return sentences


def flow_sentences(groups: Sequence[ConfigurationSummary]) -> list[str]:
    """Which configurations vanish, explode or stay healthy at the first epoch (geometric means
    of the first-to-last ratio over seeds)."""
    by_verdict: dict[str, list[str]] = {}
    for group in groups:
        if group.ratio_first.n:
            by_verdict.setdefault(_flow_verdict(group), []).append(
                f"{group.name} {format_estimate(group.ratio_first)}")
    if not by_verdict:
        return ["No run here recorded usable gradient data, so gradient flow cannot be compared."]
    parts = [f"{name}: {join_words(items)}" for name, items in sorted(by_verdict.items())]
    return ["First-to-last ratio at the first epoch (geometric mean over seeds), by verdict: "
            + "; ".join(parts) + "."]


def experiment_findings(groups: Sequence[ConfigurationSummary]) -> list[str]:
    """Step 5's finding for one experiment, over its variants' seeds."""
    sentences: list[str] = []
    flow = [g for g in groups if g.ratio_first.n]
    if flow:
        sentences.append("First-to-last ratio at the first epoch: " + join_words(
            [f"{format_estimate(g.ratio_first)} ({_flow_verdict(g)}) with {g.name}"
             for g in flow]) + ".")
        verdicts = {_flow_verdict(g) for g in flow}
        if len(flow) > 1 and len(verdicts) == 1:
            every = "both" if len(flow) == 2 else f"all {len(flow)}"
            sentences.append(f"By the {VERDICT_THRESHOLDS.vanishing_below:g}-"
                             f"{VERDICT_THRESHOLDS.exploding_above:g} rule {every} variants are "
                             f"{verdicts.pop()}, so on this measure the axis does not change the "
                             "verdict.")
        if len(flow) > 1:
            lowest = min(flow, key=lambda g: g.ratio_first.centre)
            highest = max(flow, key=lambda g: g.ratio_first.centre)
            sentences.append(difference(highest.name, highest.ratio_first, lowest.name,
                                        lowest.ratio_first, what="Highest against lowest ratio"))
    else:
        sentences.append("No variant recorded usable gradient data.")
    scored = sorted((g for g in groups if g.best_val_acc.n), key=lambda g: -g.best_val_acc.centre)
    if len(scored) > 1:
        sentences += accuracy_sentences(scored)[:1]
        best = scored[0]
        called = [compare(best.best_val_acc, other.best_val_acc) for other in scored[1:]]
        beaten = [other.name for other, result in zip(scored[1:], called, strict=True)
                  if result.verdict is Verdict.HIGHER]
        tied = [other.name for other, result in zip(scored[1:], called, strict=True)
                if result.verdict is Verdict.WITHIN_NOISE]
        if max_seeds(scored) < 2:
            sentences.append("With one seed per variant these accuracies cannot be told apart "
                             "from seed-to-seed noise.")
        else:
            parts = []
            if beaten:
                parts.append(f"beyond seed-to-seed variation above {join_words(beaten)}")
            if tied:
                parts.append(f"within seed-to-seed variation of {join_words(tied)}")
            if parts:
                sentences.append(f"{best.name} is {'; '.join(parts)} (Welch's test, p < 0.05 "
                                 "to call a difference).")
    return sentences
