"""The appendix (collapsed in the HTML): how the numbers are computed, every run, the data,
architectures and training setups, the theory table, heat maps and software versions."""

from __future__ import annotations

import math
from importlib import metadata

from gradprobe.analysis.document import Block, Context, Section, bullets, h3, p, table
from gradprobe.analysis.events import method_text as events_method_text
from gradprobe.analysis.figures import plot_heatmap
from gradprobe.analysis.format import fmt_count, fmt_db, fmt_pct, fmt_ratio
from gradprobe.analysis.questions.common import comparison_or_all
from gradprobe.analysis.questions.why import theory_table
from gradprobe.analysis.replicates import MIN_SEEDS_TO_COMPARE, SIGNIFICANCE
from gradprobe.analysis.states import state_text
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.analysis.summary import VERDICT_THRESHOLDS
from gradprobe.metrics import metric_info
from gradprobe.record import Col, RunState

REPORT_LIBRARIES = ("matplotlib", "pandas", "numpy", "scipy", "pyarrow", "jinja2")


def method_items(analysis: StudyAnalysis) -> list[str]:
    low, high = VERDICT_THRESHOLDS.vanishing_below, VERDICT_THRESHOLDS.exploding_above
    chance = analysis.chance.describe() if analysis.chance else "not known (no data recorded)"
    return [
        f"Gradient metrics: {metric_info(analysis.metric).label} ({analysis.metric}) and, where "
        "recorded, the gradient at each layer's output (output_grad_norm). A layer's norm at an "
        "epoch is the mean of its per-step values; non-finite values are left out.",
        "First-to-last ratio: the norm of the conv layer nearest the input over that of the one "
        "nearest the output, at step 0 (the first recorded step), the first and the last epoch. "
        "Shortcut convs and linear layers are left out; a net without convs uses its linear "
        "layers, and fewer than two such layers give no verdict.",
        f"Verdict: vanishing below {low:g}, exploding above {high:g}, healthy between; a point "
        "is vanishing when either gradient metric says so.",
        f"At chance: {chance}.",
        "Decay per layer: least squares of log10(norm) on depth; the factor 10^(-slope) is the "
        f"change per layer going back to the input (halving is {fmt_db(10 * math.log10(0.5))}).",
        "Over seeds: scores are arithmetic means with a Student-t 95% interval, ratios geometric "
        "means with the interval computed on log10. A difference is called when Welch's t-test "
        f"gives p < {SIGNIFICANCE:g} with at least {MIN_SEEDS_TO_COMPARE} seeds a side.",
        "Weight distance: ‖W_t − W_0‖/‖W_0‖ of each layer after each epoch.",
        events_method_text(),
    ]


def run_rows(analysis: StudyAnalysis) -> list[list[str]]:
    rows = []
    for name, run in analysis.study.runs.items():
        s = analysis.summary(name)
        epochs = run.metrics[Col.epoch].max() if not run.metrics.empty else None
        rows.append([name, state_text(run), fmt_count(epochs), fmt_pct(s.best_val_acc),
                     fmt_pct(s.test_acc), fmt_ratio(s.ratio_first_step),
                     fmt_ratio(s.first.ratio), fmt_ratio(s.last.ratio),
                     s.first.verdict + (f" ({s.reason})" if s.reason else "")])
    return rows


def setup_tables(analysis: StudyAnalysis) -> list[Block]:
    arch, train = [], {}
    for config in analysis.configurations:
        run = analysis.run(config.runs[0])
        model, info = run.section("model"), run.model_info
        if model or info:
            arch.append([config.name, str(model.get("name", "n/a")),
                         "yes" if info.get("residual") else "no", str(model.get("width", "n/a")),
                         str(info.get("norm", "n/a")), str(info.get("activation", "n/a")),
                         str(info.get("init", "n/a")), fmt_count(info.get("conv_layers")),
                         fmt_count(info.get("shortcut_layers")),
                         fmt_count(info.get("parameters"))])
        settings = run.section("train")
        if settings:
            key = tuple(str(settings.get(k, "n/a")) for k in (
                "epochs", "batch_size", "optimizer", "lr", "momentum", "warmup_epochs",
                "scheduler"))
            train.setdefault(key, []).append(config.name)
    blocks: list[Block] = [h3("Architectures"), table(
        ["configuration", "model", "residual", "width", "norm", "activation", "init",
         "conv layers", "shortcut convs", "parameters"], arch)]
    blocks += [h3("Training setups"), table(
        ["configurations", "epochs", "batch", "optimiser", "lr", "momentum", "warm-up epochs",
         "schedule"], [[", ".join(names) if len(train) > 1 else "all", *key]
                       for key, names in train.items()])]
    info = next((run.data_info for run in analysis.study.runs.values() if run.data_info), {})
    if info:
        counts = info.get("counts") or {}
        blocks += [h3("Data"), p(
            f"{info.get('kind', 'n/a')}: {info.get('num_classes', 'n/a')} classes; "
            + ", ".join(f"{split} {counts.get(split, 'n/a')}" for split in ("train", "val", "test"))
            + f" images; fingerprint {info.get('fingerprint', 'n/a')}; "
            f"{info.get('skipped_files') or 0} unreadable files skipped.")]
        classes = [str(c) for c in info.get("classes") or []] or [
            str(c) for c, _ in sorted((info.get("class_to_idx") or {}).items(),
                                      key=lambda item: item[1])]
        per_class = info.get("class_counts") or {}
        if classes and per_class:
            blocks.append(table(["class", "train", "val", "test"], [
                [name, *(fmt_count((per_class.get(split) or [None] * len(classes))[index])
                         for split in ("train", "val", "test"))]
                for index, name in enumerate(classes)]))
        elif classes:
            blocks.append(table(["class"], [[name] for name in classes]))
    return blocks


def versions(analysis: StudyAnalysis) -> list[str]:
    seen: dict[str, set[str]] = {}
    for run in analysis.study.runs.values():
        for key, value in run.versions.items():
            seen.setdefault(str(key), set()).add(str(value))
    lines = [f"{key} {', '.join(sorted(values))}" for key, values in sorted(seen.items())]
    for library in REPORT_LIBRARIES:
        try:
            lines.append(f"{library} {metadata.version(library)} (analysis)")
        except metadata.PackageNotFoundError:
            continue
    return lines


def section(context: Context) -> Section:
    analysis = context.analysis
    blocks: list[Block] = [h3("How the numbers are computed"), bullets(method_items(analysis)),
                           h3("Every run"), table(
        ["run", "outcome", "epochs", "best val acc", "test acc", "ratio, step 0",
         "ratio, first epoch", "ratio, last epoch", "verdict, first epoch"], run_rows(analysis))]
    notes = list(analysis.study.problems) + [
        f"{name}: {'; '.join(run.problems)}" for name, run in analysis.study.runs.items()
        if run.problems and (run.state is RunState.COMPLETED  # damage: whatever the state
                             or any("is damaged" in problem for problem in run.problems))]
    if notes:
        blocks += [p("Notes on the records:"), bullets(notes)]
    blocks += setup_tables(analysis)
    if analysis.theory:
        blocks += [h3("Theory beside measurement, per run"), theory_table(analysis.theory)]
    blocks.append(h3("Heat maps"))
    for config in comparison_or_all(analysis):
        run = analysis.run(config.runs[0])
        if run.gradients.empty:
            continue
        path = plot_heatmap(run, analysis.metric, context.figures.path(f"{run.name}-heatmap"))
        blocks.append(context.figures.block(path, f"{config.name}: layer by epoch heat map",
                                            f"{config.name} (seed {config.seeds[0]}): log10 of "
                                            "each layer's epoch-mean norm, input at the top."))
    blocks += [h3("Software versions"), bullets(versions(analysis))]
    return Section("appendix", "Appendix", tuple(blocks), main=False, appendix=True)
