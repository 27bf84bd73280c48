"""Step 6 (c): why do residual connections help, and do they here?

The identity-path argument (He et al. 2016b) is exact for pre-activation blocks; the zoo's
blocks are post-activation (a ReLU after the addition) with 1×1 projection shortcuts where the
shape changes, so the answer is tested on the study's plain/residual twins (the model
registry's pairs), at step 0 and at the last epoch.
"""

from __future__ import annotations

import math

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.document import Block, Context, Section, answer, formula, p
from gradprobe.analysis.format import fmt_ratio, join_words
from gradprobe.analysis.questions.common import (
    OUTPUT,
    WEIGHT,
    accuracy,
    accuracy_difference,
    centre,
)
from gradprobe.analysis.study import StudyAnalysis

IDENTITY_TEXT = (
    "A residual block adds its input to its branch, x_{l+1} = x_l + F(x_l). In a pre-activation "
    "block, where nothing follows the addition, the Jacobian contains the identity, so the "
    "gradient reaching a shallow block contains ∂L/∂x_L itself (He et al. 2016b):")
IDENTITY_FORMULA = "∂L/∂x_l = ∂L/∂x_L · (I + ∂/∂x_l Σ_{i=l}^{L-1} F(x_i))"
ZOO_TEXT = (
    "The zoo's blocks are post-activation, as in He et al. (2016a): a ReLU follows each addition, "
    "and a 1×1 projection conv replaces the identity where the shape changes. The skip path "
    "therefore passes a ReLU at every block and a conv at each projection, so the gradient can "
    "still shrink on it, only far less than through two convs per block. Mean-field theory "
    "predicts polynomial rather than exponential change with depth for such nets (Yang & "
    "Schoenholz 2017); residual nets also behave like ensembles of short paths (Veit et al. "
    "2016) and keep their gradients' spatial structure (Balduzzi et al. 2017).")


def evenness(config: Configuration, metric: str, point: str) -> float:
    """Decades between the ratio and 1 (0: perfectly even flow)."""
    value = centre(config, metric, point)
    return abs(math.log10(value)) if value and value > 0 else math.inf


def twin_facts(analysis: StudyAnalysis) -> list[tuple[Configuration, Configuration, bool, bool]]:
    """(plain, residual, residual flows more evenly at the last epoch, residual learns better)."""
    facts = []
    for plain, residual in analysis.twins:
        even = evenness(residual, WEIGHT, "last") < evenness(plain, WEIGHT, "last")
        better = (residual.final_val_acc.n > 0 and plain.final_val_acc.n > 0
                  and residual.final_val_acc.centre > plain.final_val_acc.centre)
        facts.append((plain, residual, even, better))
    return facts


def answer_sentence(analysis: StudyAnalysis) -> str:
    facts = twin_facts(analysis)
    if not facts:
        return ("Not testable here: the study holds no plain and residual twins (models "
                "the registry pairs, trained alike).")
    even = sum(f[2] for f in facts)
    better = sum(f[3] for f in facts)
    lead = ("Yes" if even == better == len(facts) else "No" if even == better == 0
            else "Partly")
    return (f"{lead}: in {even} of {len(facts)} plain/residual twin pairs the residual net's "
            f"last-epoch gradient ratio is nearer 1, and in {better} of {len(facts)} it reaches "
            "the higher mean validation accuracy.")


def pair_sentences(analysis: StudyAnalysis) -> list[str]:
    sentences = []
    for plain, residual, _, _ in twin_facts(analysis):
        step0 = [fmt_ratio(centre(c, OUTPUT, "step0")) for c in (plain, residual)]
        last = [fmt_ratio(centre(c, WEIGHT, "last")) for c in (plain, residual)]
        sentences.append(
            f"{plain.name} against {residual.name}: output-gradient ratio at step 0 {step0[0]} "
            f"against {step0[1]}, weight-gradient ratio at the last epoch {last[0]} against "
            f"{last[1]}, accuracy {accuracy(plain)} against {accuracy(residual)} "
            f"({accuracy_difference(residual, plain)}).")
    return sentences


def theory_sentence(analysis: StudyAnalysis) -> str | None:
    """The theory's exponential-against-polynomial claim, checked on the measured step-0 ratios
    of the twins ordered by depth."""
    pairs = sorted(analysis.twins, key=lambda pair: pair[0].model.get("conv_layers") or 0)
    if len(pairs) < 2:
        return None
    plain = [(p.model.get("conv_layers"), centre(p, OUTPUT, "step0")) for p, _ in pairs]
    res = [(r.model.get("conv_layers"), centre(r, OUTPUT, "step0")) for _, r in pairs]
    if any(v is None or v <= 0 for _, v in plain + res):
        return None

    def decades(values: list[tuple[int | None, float | None]]) -> float:
        return abs(math.log10(values[-1][1] / values[0][1]))  # type: ignore[operator]

    agrees = decades(res) < decades(plain)
    return ("Measured at step 0 against conv depth, the output-gradient ratio is "
            + join_words([f"{fmt_ratio(v)} at {d}" for d, v in plain]) + " in the plain nets and "
            + join_words([f"{fmt_ratio(v)} at {d}" for d, v in res])
            + f" in the residual ones: the residual ratio moves {decades(res):.2f} decades over "
            f"that range, the plain {decades(plain):.2f}, "
            + ("as the theory predicts." if agrees else "unlike the theory's prediction."))


def key_finding(analysis: StudyAnalysis) -> str | None:
    facts = twin_facts(analysis)
    if not facts:
        return None
    deepest = max(facts, key=lambda f: f[0].model.get("conv_layers") or 0)
    plain, residual = deepest[0], deepest[1]
    if not (plain.final_val_acc.n and residual.final_val_acc.n):
        return None
    gap = 100 * (residual.final_val_acc.centre - plain.final_val_acc.centre)
    return (f"At the greatest depth tested, the residual twin's validation accuracy is "
            f"{gap:+.0f} points from the plain net's ({residual.name} against {plain.name}).")


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = [answer(answer_sentence(analysis)), p(IDENTITY_TEXT),
                           formula(IDENTITY_FORMULA), p(ZOO_TEXT)]
    blocks += [p(s) for s in pair_sentences(analysis)]
    sentence = theory_sentence(analysis)
    if sentence:
        blocks.append(p(sentence))
    return Section("why_residual", "(c) Why residual connections help", tuple(blocks), level=3)
