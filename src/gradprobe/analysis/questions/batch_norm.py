"""Step 6 (d): what does batch normalisation do to the gradient flow?

Answered on the study's batch-norm twins (configurations that differ only in `model.norm`): the
step-0 ratio against Yang et al. (2019)'s prediction that batch norm without skips makes
gradients explode towards the input at initialisation, and the ratios and accuracy after
training.
"""

from __future__ import annotations

import json

from gradprobe.analysis.configurations import Configuration, config_key
from gradprobe.analysis.document import Block, Context, Section, answer, formula, p
from gradprobe.analysis.format import fmt_ratio
from gradprobe.analysis.questions.common import (
    OUTPUT,
    WEIGHT,
    accuracy,
    accuracy_difference,
    centre,
)
from gradprobe.analysis.study import StudyAnalysis

BN_TEXT = (
    "Batch normalisation standardises each channel over the mini-batch, then scales and shifts "
    "it with learned parameters (Ioffe & Szegedy 2015). It makes a layer invariant to the scale "
    "of the weights that feed it:")
BN_FORMULA = "BN((a·W) u) = BN(W u)   ⇒   ∂L/∂u unchanged,   ∂L/∂(a·W) = (1/a) ∂L/∂W"
BN_AFTER = (
    "so large weights receive proportionally smaller gradients, which steadies the effective "
    "step; its benefit is better explained by a smoother loss landscape than by reduced "
    "covariate shift (Santurkar et al. 2018). It does not guarantee healthy gradients: without "
    "skips, mean-field theory predicts gradients that grow towards the input with depth at "
    "initialisation (Yang et al. 2019).")


def twins(analysis: StudyAnalysis) -> list[tuple[Configuration, Configuration]]:
    """(without, with batch norm) configurations equal in every other setting."""
    keyed: dict[str, dict[str, Configuration]] = {}
    for config in analysis.configurations:
        key = json.loads(config_key(analysis.run(config.runs[0])))
        norm = str((key.get("model") or {}).pop("norm", None) or "none")
        keyed.setdefault(json.dumps(key, sort_keys=True), {}).setdefault(norm, config)
    return [(found["none"], found["batch"]) for found in keyed.values()
            if "none" in found and "batch" in found]


def _step0(config: Configuration) -> float | None:
    found = centre(config, OUTPUT, "step0")
    return found if found is not None else centre(config, WEIGHT, "step0")


def pair_sentence(plain: Configuration, bn: Configuration) -> str:
    """After training: the batch-normalised twin's last ratio and both accuracies."""
    return (f"By the last epoch {bn.name}'s weight-gradient ratio is "
            f"{fmt_ratio(centre(bn, WEIGHT, 'last'))} ({bn.verdict_text()}); it reaches "
            f"{accuracy(bn)} against {accuracy(plain)} for {plain.name} "
            f"({accuracy_difference(bn, plain)}).")


def answer_sentence(analysis: StudyAnalysis) -> str:
    pairs = twins(analysis)
    if not pairs:
        return ("Not testable here: the study holds no configurations that differ only by "
                "batch norm.")
    plain, bn = pairs[0]
    step0 = _step0(bn)
    if step0 is None:
        return f"The records of {bn.name} hold no step-0 gradients, so this cannot be answered."
    learns = bool(bn.final_val_acc.n and plain.final_val_acc.n) and (
        bn.final_val_acc.centre > plain.final_val_acc.centre)
    if step0 > 10:
        lead = ("It makes the gradient explode at initialisation, not vanish"
                + (", yet the net learns where its twin without it stays at chance"
                   if learns and plain.at_chance else ""))
        why = ", as Yang et al. (2019) predict for nets without skips"
    else:
        lead, why = "It does not make the gradient explode at initialisation here", ""
    return f"{lead}: {bn.name}'s step-0 ratio is {fmt_ratio(step0)}{why}."


def key_finding(analysis: StudyAnalysis) -> str | None:
    pairs = twins(analysis)
    if not pairs:
        return None
    plain, bn = pairs[0]
    step0 = _step0(bn)
    if step0 is None or step0 <= 10:
        return None
    return (f"Batch norm makes {plain.name}'s gradient grow towards the input at step 0: "
            f"first-to-last ratio {fmt_ratio(step0)}.")


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = [answer(answer_sentence(analysis)), p(BN_TEXT), formula(BN_FORMULA),
                           p(BN_AFTER)]
    pairs = twins(analysis)
    if pairs:
        blocks.insert(1, p(pair_sentence(*pairs[0])))
    for plain, bn in pairs[1:]:
        blocks += [p(f"{bn.name}'s step-0 ratio is {fmt_ratio(_step0(bn))}."),
                   p(pair_sentence(plain, bn))]
    return Section("batch_norm", "(d) What batch normalisation does", tuple(blocks), level=3)
