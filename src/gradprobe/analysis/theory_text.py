"""The report's "theory beside measurement" part of Step 6 (b): a table of predicted against
measured per-layer factors at initialisation, and sentences computed from `theory_check`.

Every sentence states numbers the check computed; a run without a prediction shows the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradprobe.analysis.format import fmt_r2, fmt_ratio, join_words
from gradprobe.analysis.load import StudyData
from gradprobe.analysis.text import Block, p, table
from gradprobe.analysis.theory_check import (
    AGREES,
    NO_PREDICTION,
    NOT_MEASURED,
    PARTS,
    QUANTITY,
    TOLERANCE,
    WITH_BORDERS,
    TheoryCheck,
    border_fraction,
    check_study,
)

HEADERS = ("run", "predicted per layer", "with zero-padded borders", "measured, first step",
           "measured / predicted", "measured, last epoch", "note")


def theory_blocks(study: StudyData) -> list[Block]:
    """The table and paragraphs for every run of `study` (imports torch to predict)."""
    return theory_blocks_for(check_study(study))


def theory_blocks_for(checks: Sequence[TheoryCheck]) -> list[Block]:
    if not checks:
        return []
    tolerance = f"{TOLERANCE:.0%}"
    layers = max(check.transitions + check.skipped for check in checks)
    blocks = [p(
        "Theory beside measurement. Mean-field theory predicts, before any training, the factor "
        "by which the norm of the gradient with respect to a layer's output changes per layer "
        "toward the input at initialisation: gain² = Var(w)·fan_in·E[φ'(z)²] with z the "
        "layer's Gaussian pre-activation (Poole et al. 2016; Schoenholz et al. 2017; Yang et al. "
        "2019 for batch norm with ReLU). The table sets it beside the factor fitted to each "
        f"run's {QUANTITY} at its first recorded step (step 0 is the gradient of the initial "
        "weights, where the theory applies): least squares of the log norm on the layer's index, "
        "one intercept per stretch between pooling layers, over the transitions the theory "
        "covers (none covers a pooling layer); the predicted factor is the same fit to the "
        f"predicted profile. They agree within ±{tolerance}: the theory is the infinite-width "
        f"limit, and {tolerance} per layer already compounds to {1 - TOLERANCE:g}^{layers} ≈ "
        f"{fmt_ratio((1 - TOLERANCE) ** layers)} over {layers} transitions. The "
        "borders column counts what the theory leaves out at the edges of a feature map: a "
        f"3×3 conv on a 2×2 map sees {border_fraction(3, 2, 2):.0%} of its taps, which "
        f"multiplies the gain by √{border_fraction(3, 2, 2):.2f}."),
        table(list(HEADERS), [_row(check) for check in checks])]
    blocks += [p(sentence) for sentence in theory_sentences(checks)]
    return blocks


def _row(check: TheoryCheck) -> list[str]:
    step = "" if check.step is None else f" (step {check.step})"
    last = "" if check.last_epoch is None else f" (epoch {check.last_epoch})"
    note = check.agreement
    if check.agreement in (AGREES, WITH_BORDERS, PARTS):
        note += f"; {check.transitions} transitions, R² {fmt_r2(check.r2)}"
        if check.skipped:
            note += f", {check.skipped} without a prediction"
    else:
        note += f": {check.reason}"
    measured = fmt_ratio(check.measured) + step if check.measured is not None else "n/a"
    last_value = (fmt_ratio(check.measured_last) + last if check.measured_last is not None
                  else "n/a")
    return [check.run, fmt_ratio(check.predicted), fmt_ratio(check.border_predicted), measured,
            fmt_ratio(check.ratio), last_value, note]


def _pair(check: TheoryCheck) -> str:
    return f"{check.run} ({fmt_ratio(check.measured)} against {fmt_ratio(check.predicted)})"


def theory_sentences(checks: Sequence[TheoryCheck]) -> list[str]:
    """Where theory and measurement agree and where they part, with the computed reasons."""
    sentences = []
    agree = [check for check in checks if check.agreement == AGREES]
    if agree:
        sentences.append(f"Theory and measurement agree within {TOLERANCE:.0%} per layer for "
                         f"{join_words([_pair(check) for check in agree])}.")
    borders = [check for check in checks if check.agreement == WITH_BORDERS]
    if borders:
        smallest = min(check.smallest_map or 0 for check in borders)
        share = border_fraction(3, smallest, smallest) if smallest else None
        where = (f" (on the smallest, {smallest}×{smallest} maps a 3×3 conv sees "
                 f"{share:.0%} of its taps)" if share is not None else "")
        sentences.append(
            "They part by more than the tolerance but agree once the zero-padded borders of the "
            f"feature maps are counted{where} for " + join_words(
                [f"{check.run} (measured {fmt_ratio(check.measured)}, predicted "
                 f"{fmt_ratio(check.predicted)}, {fmt_ratio(check.border_predicted)} with "
                 "borders)" for check in borders]) + ": the theory's layers have no edges.")
    for check in (check for check in checks if check.agreement == PARTS):
        facts = []
        if check.narrowest is not None:
            facts.append(f"its narrowest fitted layer has {check.narrowest} channels")
        if check.batch_size:
            facts.append(f"its batch holds {check.batch_size} images")
        sentences.append(
            f"They part for {check.run}: measured {fmt_ratio(check.measured)} per layer against "
            f"{fmt_ratio(check.predicted)} predicted ({fmt_ratio(check.border_predicted)} with "
            f"borders; ratio {fmt_ratio(check.ratio)}, R² {fmt_r2(check.r2)} over "
            f"{check.transitions} transitions). The theory is the infinite-width, "
            "infinite-batch limit" + (f", and {join_words(facts)}." if facts else "."))
    pooled = [check for check in checks if check.skipped and check.measured is not None]
    if pooled:
        groups: dict[tuple[int, int], list[str]] = {}
        for check in pooled:
            total = check.skipped + check.transitions
            groups.setdefault((check.transitions, total), []).append(check.run)
        parts = [f"{covered} of {total} transitions in {join_words(names)}"
                 for (covered, total), names in groups.items()]
        variance_bound = [check.run for check in pooled
                          if check.activation in ("tanh", "sigmoid", "gelu")]
        sentences.append(
            "Pooling layers: no result covers a transition across one, so the comparison uses "
            f"{join_words(parts)}." + (
                f" In {join_words(variance_bound)} the activation's gain depends on the signal's "
                "variance, which pooling changes, so only the layers before the first pool are "
                "predicted." if variance_bound else ""))
    reasons: dict[str, list[str]] = {}
    for check in checks:
        if check.agreement in (NO_PREDICTION, NOT_MEASURED):
            reasons.setdefault(f"{check.agreement}: {check.reason}", []).append(check.run)
    for reason, names in reasons.items():
        sentences.append(f"{join_words(names)}: {reason}.")
    sentences += _training_sentences(checks)
    return sentences


def _training_sentences(checks: Sequence[TheoryCheck]) -> list[str]:
    """How far training moved each run's fitted factor from its first step (the theory's)."""
    moved, stayed = [], []
    for check in checks:
        if check.measured is None or check.measured_last is None:
            continue
        change = check.measured_last / check.measured
        if abs(change - 1.0) > TOLERANCE:
            moved.append(f"{check.run} ({fmt_ratio(check.measured)} → "
                         f"{fmt_ratio(check.measured_last)} at epoch {check.last_epoch})")
        else:
            stayed.append(check.run)
    sentences = []
    if moved:
        sentences.append("Training moved the fitted factor away from initialisation by more than "
                         f"{TOLERANCE:.0%} in {join_words(moved)}: there the trained weights, "
                         "not the initial ones, set the profile, and the theory no longer "
                         "applies.")
    if stayed:
        sentences.append(f"The last epoch's mean factor stayed within {TOLERANCE:.0%} of the "
                         f"first step's in {join_words(stayed)}.")
    return sentences
