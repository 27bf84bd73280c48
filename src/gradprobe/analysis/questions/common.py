"""Small shared phrasings of the question modules: a configuration's accuracy against chance,
its ratios, its verdict, and differences called by the seed rule."""

from __future__ import annotations

from collections.abc import Sequence

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.format import fmt_ratio, join_words
from gradprobe.analysis.replicates import Estimate, Verdict, compare, format_estimate
from gradprobe.analysis.study import StudyAnalysis

WEIGHT, OUTPUT = "weight_grad_norm", "output_grad_norm"
POINT_WORDS = {"step0": "at step 0", "first": "at the first epoch", "last": "at the last epoch"}


def pct(value: Estimate, interval: bool = False) -> str:
    return format_estimate(value, percent=True, interval=interval)


def accuracy(config: Configuration, interval: bool = False, final: bool = True) -> str:
    """"96.2%" or "10.4%, at chance": final (or best) validation accuracy over seeds."""
    text = pct(config.final_val_acc if final else config.best_val_acc, interval)
    outcome = config.outcome()
    return f"{text}, {outcome}" if outcome else text


def ratio(config: Configuration, metric: str, point: str, interval: bool = False) -> str:
    value = config.ratio(metric, point)
    return "n/a" if value is None or value.n == 0 else format_estimate(value, interval=interval)


def centre(config: Configuration, metric: str, point: str) -> float | None:
    value = config.ratio(metric, point)
    return value.centre if value is not None and value.n else None


def names(configs: Sequence[Configuration]) -> str:
    return join_words([c.name for c in configs])


def learns(config: Configuration) -> bool:
    return config.final_val_acc.n > 0 and not config.at_chance and not config.at_chance_runs


def beyond_seed_variation(a: Configuration, b: Configuration) -> bool:
    """Whether a and b's final accuracies differ beyond seed-to-seed variation (Welch's rule)."""
    return bool(a.final_val_acc.n and b.final_val_acc.n) and \
        compare(a.final_val_acc, b.final_val_acc).verdict not in (Verdict.WITHIN_NOISE,
                                                                 Verdict.TOO_FEW_SEEDS)


def accuracy_difference(a: Configuration, b: Configuration) -> str:
    """"(+85.1 points, beyond seed-to-seed variation)" by Welch's rule, or within it."""
    if not (a.final_val_acc.n and b.final_val_acc.n):
        return ""
    result = compare(a.final_val_acc, b.final_val_acc)
    size = f"{100 * result.factor:+.1f} points"
    if result.verdict is Verdict.TOO_FEW_SEEDS:
        return f"{size}, one seed: not separable from noise"
    if result.verdict is Verdict.WITHIN_NOISE:
        return f"{size}, within seed-to-seed variation"
    return f"{size}, beyond seed-to-seed variation"


def ratio_words(config: Configuration, metric: str = WEIGHT) -> str:
    """"0.85 at step 0, 0.62 at epoch 1 and 0.012 at epoch 7"."""
    parts = []
    for point, where in (("step0", "at step 0"), ("first", f"at epoch {config.first_epoch}"),
                         ("last", f"at epoch {config.last_epoch}")):
        value = centre(config, metric, point)
        if value is not None and not (point == "last" and config.last_epoch == config.first_epoch):
            parts.append(f"{fmt_ratio(value)} {where}")
    return join_words(parts)


def comparison_or_all(analysis: StudyAnalysis) -> list[Configuration]:
    return analysis.comparison or analysis.configurations
