"""Step 6 (b): why do gradients vanish? The chain rule, then the theory's prediction at
initialisation set beside the measured step-0 profile of every configuration.

The prose claims only what holds whatever the data say; each number comes from the analysis.
"""

from __future__ import annotations

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, formula, p, table
from gradprobe.analysis.format import fmt_r2, fmt_ratio, join_words
from gradprobe.analysis.questions.common import names
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.analysis.theory_check import (
    AGREES,
    NO_PREDICTION,
    NOT_MEASURED,
    PARTS,
    TOLERANCE,
    WITH_BORDERS,
    TheoryCheck,
)

CHAIN_RULE = (
    "By the chain rule, the gradient at layer l is the output's gradient multiplied by the "
    "Jacobian of every layer above it:")
CHAIN_FORMULA = ("∂L/∂W_l = ∂L/∂x_L · (∂x_L/∂x_{L-1}) ⋯ (∂x_{l+1}/∂x_l) · ∂x_l/∂W_l,   "
                 "∂x_{k+1}/∂x_k = diag(φ'(z_k)) · W_k")
CHAIN_TEXT = (
    "When the typical gain of these factors is below 1, the product shrinks geometrically with "
    "the number of layers above l (Hochreiter 1991; Bengio et al. 1994). Saturating activations "
    "(the sigmoid's slope is at most 1/4) and weights initialised too small lower the gain; a "
    "gain above 1 makes it explode (Glorot & Bengio 2010). He initialisation, Var(W) = "
    "2/fan_in, sets a ReLU layer's gain to 1 at initialisation only (He et al. 2015): training "
    "changes the weights, and with them the gain.")
THEORY_TEXT = (
    "Mean-field theory predicts the gain per layer at initialisation, gain² = "
    "Var(w)·fan_in·E[φ'(z)²] (Poole et al. 2016; Schoenholz et al. 2017; Yang et al. 2019 for "
    "batch norm); the appendix sets it beside the factor fitted to each run's output-gradient "
    f"norms at step 0, calling them in agreement within ±{TOLERANCE:.0%} per layer.")


def first_checks(analysis: StudyAnalysis) -> list[tuple[Configuration, TheoryCheck]]:
    """Each configuration's first run's theory check."""
    by_run = {check.run: check for check in analysis.theory}
    return [(c, by_run[c.runs[0]]) for c in analysis.configurations if c.runs[0] in by_run]


def answer_sentence(analysis: StudyAnalysis) -> str:
    pairs = first_checks(analysis)
    compared = [(c, k) for c, k in pairs if k.agreement in (AGREES, WITH_BORDERS, PARTS)]
    agree = [c for c, k in compared if k.agreement in (AGREES, WITH_BORDERS)]
    if not compared:
        return ("Because each layer multiplies the gradient by its gain; this study has no "
                "configuration the theory covers, so the gains are not checked here.")
    return (f"Because each layer multiplies the gradient by its gain: at step 0 the theory's "
            f"per-layer gain matches the measured one within {TOLERANCE:.0%} in {len(agree)} of "
            f"{len(compared)} configurations it covers, so there the initialisation explains "
            "the step-0 profile.")


def training_sentence(analysis: StudyAnalysis) -> str | None:
    """Where training moved the profile away from the theory's initialisation."""
    moved = []
    for config, check in first_checks(analysis):
        if check.measured and check.measured_last:
            change = check.measured_last / check.measured
            if abs(change - 1.0) > TOLERANCE and config.verdicts["last"] != config.verdicts[
                    "step0"]:
                moved.append(f"{config.name} ({fmt_ratio(check.measured)} → "
                             f"{fmt_ratio(check.measured_last)} per layer)")
    if not moved:
        return None
    return ("Training then moved the measured gain and changed the verdict in "
            + join_words(moved) + ": there the trained weights, not the initialisation, "
            "explain the profile.")


def parts_sentences(analysis: StudyAnalysis) -> list[str]:
    """Where theory and measurement part, and where there is nothing to compare (one sentence
    each: a reader, or a rerun after damage, can tell them apart)."""
    checks = first_checks(analysis)
    parts = [c for c, k in checks if k.agreement == PARTS]
    unpredicted = [c for c, k in checks if k.agreement == NO_PREDICTION]
    unmeasured = [c for c, k in checks if k.agreement == NOT_MEASURED]
    sentences = []
    if parts:
        sentences.append(f"Theory and step-0 measurement part in {names(parts)}, narrow or "
                         "small-batch nets far from the theory's infinite-width limit.")
    if unpredicted:
        sentences.append(f"No prediction for {names(unpredicted)} (reasons in the appendix).")
    if unmeasured:
        sentences.append(f"Not measured for the theory: {names(unmeasured)} (see the appendix).")
    return sentences


def key_finding(analysis: StudyAnalysis) -> str | None:
    pairs = [(c, k) for c, k in first_checks(analysis)
             if k.agreement in (AGREES, WITH_BORDERS, PARTS)]
    if not pairs:
        return None
    agree = sum(k.agreement in (AGREES, WITH_BORDERS) for _, k in pairs)
    return (f"The mean-field prediction of the per-layer gain at initialisation holds within "
            f"{TOLERANCE:.0%} in {agree} of {len(pairs)} configurations.")


THEORY_HEADERS = ("run", "predicted per layer", "with zero-padded borders",
                  "measured, first step", "measured / predicted", "measured, last epoch", "note")


def theory_table(checks: list[TheoryCheck]) -> Block:
    rows = []
    for check in checks:
        note = check.agreement
        if check.agreement in (AGREES, WITH_BORDERS, PARTS):
            note += f"; {check.transitions} transitions, R² {fmt_r2(check.r2)}"
        else:
            note += f": {check.reason}"
        rows.append([check.run, fmt_ratio(check.predicted), fmt_ratio(check.border_predicted),
                     fmt_ratio(check.measured), fmt_ratio(check.ratio),
                     fmt_ratio(check.measured_last), note])
    return table(THEORY_HEADERS, rows)


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = [answer(answer_sentence(analysis)), p(CHAIN_RULE),
                           formula(CHAIN_FORMULA), p(CHAIN_TEXT), p(THEORY_TEXT)]
    moved = training_sentence(analysis)
    blocks += [p(s) for s in ([moved] if moved else []) + parts_sentences(analysis)]
    return Section("why_vanish", "(b) Why gradients vanish", tuple(blocks), level=3)
