"""The first screen: the setup in one paragraph (with where it departs from the assignment), the
headline figure and one compact row per configuration."""

from __future__ import annotations

from typing import Any

from gradprobe.analysis.document import Block, Context, Section, p, table
from gradprobe.analysis.figures.overview import plot_overview
from gradprobe.analysis.format import join_words
from gradprobe.analysis.questions.common import OUTPUT, WEIGHT, accuracy, ratio
from gradprobe.analysis.study import StudyAnalysis

# The assignment's setup (DESIGN.md "Defaults that follow the original assignment", the `full`
# preset): a 3-class image folder at 64x64, full width, plain SGD 0.01, 15 epochs.
ASSIGNMENT: dict[str, Any] = {"classes": 3, "image_size": 64, "width": 1.0, "momentum": 0.0,
                              "warmup_epochs": 0.0, "epochs": 15, "optimizer": "sgd", "lr": 0.01}


def _first(analysis: StudyAnalysis, section: str) -> dict[str, Any]:
    for run in analysis.study.runs.values():
        if run.section(section):
            return run.section(section)
    return {}


def setup_sentences(analysis: StudyAnalysis) -> list[str]:
    """What was trained, and where it departs from the assignment (at most 120 words)."""
    data, train = _first(analysis, "data"), _first(analysis, "train")
    info = next((run.data_info for run in analysis.study.runs.values() if run.data_info), {})
    if not train:
        return ["No run recorded its configuration, so the setup is unknown."]
    counts = info.get("counts") or {}
    classes = next((run.num_classes for run in analysis.study.runs.values()
                    if run.num_classes), 0)
    size = data.get("image_size")
    dataset = str(data.get("dataset", "?"))
    split = "/".join(str(counts.get(s, "?")) for s in ("train", "val", "test"))
    widths = sorted({run.section("model").get("width") for run in analysis.study.runs.values()
                     if run.section("model").get("width") is not None})
    text = (f"Setup: {dataset}, {classes} classes at {size}×{size} px ({split} train/val/test "
            f"images); {len(analysis.configurations)} configurations × up to {analysis.seeds} "
            f"seeds; {str(train.get('optimizer', '?')).upper()} lr {train.get('lr')}, momentum "
            f"{train.get('momentum')}, batch {train.get('batch_size')}, {train.get('epochs')} "
            "epochs.")
    departures = []
    if classes != ASSIGNMENT["classes"] or size != ASSIGNMENT["image_size"]:
        departures.append(f"{dataset} instead of the 3-class image folder at 64 px")
    if widths and widths != [ASSIGNMENT["width"]]:
        departures.append(f"width {join_words([f'{w:g}' for w in widths])} (channels × that "
                          "factor)")
    if (train.get("momentum") or 0) != ASSIGNMENT["momentum"] or train.get("warmup_epochs"):
        departures.append(f"momentum {train.get('momentum') or 0:g} and "
                          f"{train.get('warmup_epochs') or 0:g}-epoch warm-up instead of plain "
                          "SGD")
    if train.get("epochs") != ASSIGNMENT["epochs"]:
        departures.append(f"{train.get('epochs')} epochs instead of 15")
    deep = next((run.model_info.get("conv_layers") for run in analysis.study.runs.values()
                 if run.section("model").get("name") == "vgg_deep"), None)
    sentences = [text]
    if departures:
        sentences.append("Departures from the assignment: " + "; ".join(departures) + ".")
    if deep:
        sentences.append(f"VGG-Deep has {deep} conv layers here.")
    ablation = ablation_sentence(analysis)
    if ablation:
        sentences.append(ablation)
    sentences.append("Values over seeds are means (geometric for ratios) with 95% intervals in "
                     "brackets; n is in each table's header.")
    return sentences


def vgg_deep_fails_under_quick(analysis: StudyAnalysis) -> bool:
    """The quick preset's vgg_deep, unclipped, at chance in a seed: the case the `diagnose`
    built-in study traced to the optimiser (README, "Why `vgg_deep` stays at chance")."""
    if str(analysis.study.spec.get("preset") or "") != "quick":
        return False
    for config in analysis.configurations:
        run = analysis.run(config.runs[0])
        if (config.name == "vgg_deep" and run.section("model").get("name") == "vgg_deep"
                and not run.section("train").get("grad_clip")):
            return config.at_chance_runs > 0
    return False


def ablation_sentence(analysis: StudyAnalysis) -> str | None:
    """The `diagnose` study's conclusion, where this study shows the failure it explains."""
    if not vgg_deep_fails_under_quick(analysis):
        return None
    return ("On digits, the built-in study \"diagnose\" traced VGG-Deep's failure to these "
            "optimiser settings: with the gradient norm clipped it trains.")


RESULT_HEADERS = ("configuration", "final val acc (mean of n seeds)", "n",
                  "weight-gradient ratio: step 0 / first / last epoch",
                  "output-gradient ratio: step 0 / first / last epoch", "verdict")


def result_rows(analysis: StudyAnalysis) -> list[list[str]]:
    rows = []
    for config in analysis.configurations:
        cells = []
        for metric in (WEIGHT, OUTPUT):
            if metric not in analysis.summaries:
                cells.append("not recorded")
                continue
            cells.append(" / ".join(ratio(config, metric, point)
                                    for point in ("step0", "first", "last")))
        rows.append([config.name, accuracy(config, final=True), str(len(config.runs)), *cells,
                     config.verdict_text()])
    return rows


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = [p(" ".join(setup_sentences(analysis)))]
    if analysis.configurations:
        path = plot_overview(analysis.configurations, analysis.chance, analysis.metric,
                             context.figures.path("overview"),
                             "Accuracy against chance, and gradient flow, per configuration")
        blocks.append(context.figures.block(
            path, "accuracy and first-to-last ratio of every configuration",
            "Left: final validation accuracy (dots: seeds; bar: mean; grey: a guesser's "
            "range). Right: first-to-last ratio of the weight gradient at step 0, the first "
            "and the last epoch; shaded: vanishing (left) and exploding (right)."))
        chance = (f" At chance: {analysis.chance.describe()}." if analysis.chance else "")
        blocks.append(p("Ratio: the input-side conv layer's gradient norm over the output "
                        "side's; below 0.1 vanishing, above 10 exploding." + chance))
        blocks.append(table(RESULT_HEADERS, result_rows(analysis)))
    return Section("overview", "Setup and results", tuple(blocks))
