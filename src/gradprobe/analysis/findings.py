"""Sentences and tables computed from the records: every number in the report comes from here.

Findings are phrased conditionally on what the data say: a run whose first-to-last ratio stays
within the verdict thresholds is called healthy, whatever the textbook expects of it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradprobe.analysis.load import RunData, StudyData
from gradprobe.analysis.summary import (
    METRIC_LABELS,
    VERDICT_THRESHOLDS,
    fit_kind,
    run_epoch_means,
)


# ---------------------------------------------------------------------------- number formats
def fmt_ratio(value: float | None) -> str:
    """Three significant digits: 0.00171, 0.245, 2.64, 1.23e+04."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100.0 * value:.1f}%"


def fmt_db(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.2f} dB"


def fmt_r2(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def fmt_count(value: Any) -> str:
    if value is None:
        return "n/a"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def join_words(items: Sequence[str], last: str = "and") -> str:
    """"a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# ---------------------------------------------------------------------------- run states
def state_text(run: RunData) -> str:
    """A run's outcome in words: completed, diverged at step N (...), failed: message, ..."""
    state = run.state
    if state == "diverged":
        step = run.diverged_step
        where = f" at step {step}" if step is not None else ""
        return f"diverged{where} ({_divergence_cause(run)})"
    if state == "failed":
        return f"failed: {run.message or 'no message recorded'}"
    if state == "running":
        epoch = run.status.get("epoch")
        return "still running" + (f" (epoch {epoch})" if epoch else "") + ": results are partial"
    if state == "missing":
        return "never started: its run directory does not exist"
    return state


def _divergence_cause(run: RunData) -> str:
    """"loss became NaN" / "loss became infinite", from metrics.csv, else from the message."""
    losses = run.metrics["train_loss"].to_numpy(dtype="float64") if not run.metrics.empty else []
    bad = [value for value in losses if not math.isfinite(value)]
    message = run.message.strip()
    if bad:
        return "loss became NaN" if math.isnan(bad[0]) else "loss became infinite"
    lowered = message.lower()
    if "nan" in lowered:
        return "loss became NaN"
    if "inf" in lowered:
        return "loss became infinite"
    # a message that says more than "diverged at step N" is worth keeping
    if message and "diverged" not in lowered:
        return f"loss became non-finite; {message}"
    return "loss became non-finite"


# ---------------------------------------------------------------------------- tables
def overview_rows(study: StudyData) -> list[dict[str, str]]:
    rows = []
    for name, run in study.runs.items():
        epochs = run.metrics["epoch"].max() if not run.metrics.empty else None
        rows.append({
            "run": name,
            "model": str(run.run_config.get("model", {}).get("name", "n/a")),
            "state": run.state,
            "outcome": state_text(run),
            "epochs": fmt_count(epochs),
        })
    return rows


def dataset_facts(study: StudyData) -> dict[str, Any]:
    """The dataset of the study's runs (from the first run that recorded it)."""
    infos = [(name, run) for name, run in study.runs.items() if run.data_info]
    if not infos:
        return {"known": False}
    name, run = infos[0]
    info = run.data_info
    data = run.run_config.get("data", {})
    fingerprints = {r.data_info.get("fingerprint") for _, r in infos}
    counts = info.get("counts") or {}
    classes = [str(c) for c in info.get("classes") or []]
    if not classes:  # the trainer may record only the mapping class -> index
        to_index = info.get("class_to_idx") or {}
        classes = [str(c) for c, _ in sorted(to_index.items(), key=lambda item: item[1])]
    per_class = info.get("class_counts") or {}  # split -> images per class, in class order
    class_rows = []
    for index, name in enumerate(classes):
        row = [name]
        for split in ("train", "val", "test"):
            split_counts = per_class.get(split) or []
            row.append(fmt_count(split_counts[index]) if index < len(split_counts) else "n/a")
        class_rows.append(row)
    return {
        "known": True,
        "source_run": name,
        "dataset": str(data.get("dataset", info.get("kind", "n/a"))),
        "kind": str(info.get("kind", "n/a")),
        "classes": classes,
        "class_rows": class_rows if per_class else [[name] for name in classes],
        "class_columns": ["class", "train", "val", "test"] if per_class else ["class"],
        "class_count": len(classes),
        "skipped_files": int(info.get("skipped_files") or 0),
        "image_size": data.get("image_size"),
        "split": data.get("split"),
        "seed": data.get("seed"),
        "counts": [{"split": split, "images": fmt_count(counts.get(split))}
                   for split in ("train", "val", "test") if split in counts],
        "fingerprint": str(info.get("fingerprint", "")),
        "same_everywhere": len(fingerprints) <= 1,
    }


def architecture_rows(study: StudyData) -> list[dict[str, str]]:
    rows = []
    for name, run in study.runs.items():
        model, info = run.run_config.get("model", {}), run.model_info
        if not model and not info:
            continue
        rows.append({
            "run": name,
            "model": str(model.get("name", "n/a")),
            "family": str(info.get("family", "n/a")),
            "residual": "yes" if info.get("residual") else "no",
            "width": str(model.get("width", "n/a")),
            "norm": str(info.get("norm", model.get("norm") or "n/a")),
            "activation": str(info.get("activation", model.get("activation", "n/a"))),
            "init": str(info.get("init", model.get("init", "n/a"))),
            "conv_layers": fmt_count(info.get("conv_layers")),
            "linear_layers": fmt_count(info.get("linear_layers")),
            "parameters": fmt_count(info.get("parameters")),
        })
    return rows


def training_rows(study: StudyData) -> list[dict[str, str]]:
    rows = []
    for name, run in study.runs.items():
        train = run.run_config.get("train", {})
        if not train:
            continue
        scheduler = str(train.get("scheduler", "n/a"))
        if scheduler == "step":
            scheduler = f"StepLR (every {train.get('step_size')} epochs x{train.get('gamma')})"
        rows.append({
            "run": name,
            "epochs": fmt_count(train.get("epochs")),
            "batch": fmt_count(train.get("batch_size")),
            "optimizer": str(train.get("optimizer", "n/a")),
            "lr": str(train.get("lr", "n/a")),
            "momentum": str(train.get("momentum", "n/a")),
            "scheduler": scheduler,
            "seed": str(train.get("seed", "n/a")),
            "device": str(run.config.get("device", train.get("device", "n/a"))),
        })
    return rows


def result_row(name: str, summary: Mapping[str, Any]) -> dict[str, str]:
    """One row of the comparison / experiment tables."""
    best = fmt_pct(summary.get("best_val_acc"))
    if summary.get("best_epoch") is not None and best != "n/a":
        best = f"{best} (epoch {summary['best_epoch']})"
    reached = summary.get("epochs_to_target")
    return {
        "run": name,
        "outcome": summary.get("outcome", summary.get("state", "")),
        "best_val_acc": best,
        "final_val_acc": fmt_pct(summary.get("final_val_acc")),
        "test_acc": fmt_pct(summary.get("test_acc")),
        "epochs_to_target": "not reached" if reached is None else str(reached),
        "ratio_first": _ratio_cell(summary, ""),
        "ratio_last": _ratio_cell(summary, "_last_epoch"),
        "factor": fmt_ratio(summary.get("decay_per_layer")),
        "db": fmt_db(summary.get("db_per_layer")),
        "r2": fmt_r2(summary.get("r2")),
        "verdict": _verdict_cell(summary),
    }


def _ratio_cell(summary: Mapping[str, Any], suffix: str) -> str:
    epoch = summary.get("first_epoch" if not suffix else "last_epoch")
    ratio = summary.get(f"first_to_last_ratio{suffix}")
    if ratio is None:
        return "n/a"
    return f"{fmt_ratio(ratio)} (epoch {epoch})"


def _verdict_cell(summary: Mapping[str, Any]) -> str:
    first, last = summary.get("verdict"), summary.get("verdict_last_epoch")
    return first if first == last else f"{first} → {last}"


# ---------------------------------------------------------------------------- per-run sentences
def conv_layers(run: RunData, metric: str) -> list[tuple[str, int]]:
    """(name, depth) of the fitted kind's layers, input first."""
    grads = run.gradients.loc[run.gradients["metric"] == metric]
    if grads.empty:
        return []
    kind = fit_kind(grads)
    layers = grads.loc[grads["kind"] == kind, ["layer", "depth"]].drop_duplicates("layer")
    layers = layers.sort_values(["depth", "layer"], kind="stable")
    return [(str(name), int(depth)) for name, depth in layers.itertuples(index=False)]


def _mean_at(run: RunData, metric: str, layer: str, epoch: int) -> float:
    means = run_epoch_means(run, metric)
    rows = means.loc[(means["layer"] == layer) & (means["epoch"] == epoch), "mean"]
    return float(rows.iloc[0]) if not rows.empty else math.nan


def ratio_sentence(name: str, run: RunData, summary: Mapping[str, Any]) -> str | None:
    """"In vgg_deep at epoch 1, features.0 (depth 0)'s norm is 0.0012x that of features.56 ...\""""
    if summary.get("first_to_last_ratio") is None:
        return None
    label = METRIC_LABELS[summary["metric"]]
    first, last = summary["first_layer"], summary["last_layer"]
    text = (f"In {name} at epoch {summary['first_epoch']}, {first} (depth "
            f"{summary['first_depth']})'s {label} is {fmt_ratio(summary['first_to_last_ratio'])}× "
            f"that of {last} (depth {summary['last_depth']})")
    if summary.get("last_epoch") != summary.get("first_epoch"):
        text += (f"; at epoch {summary['last_epoch']} it is "
                 f"{fmt_ratio(summary.get('first_to_last_ratio_last_epoch'))}×")
    return text + "."


def fit_sentence(summary: Mapping[str, Any]) -> str | None:
    if summary.get("decay_per_layer") is None:
        return None
    kind = summary.get("fit_kind") or "conv"
    first, last = summary.get("verdict"), summary.get("verdict_last_epoch")
    verdicts = first if first == last else (f"{first} at epoch {summary['first_epoch']}, {last} "
                                            f"at epoch {summary['last_epoch']}")
    return (f"Fitted over its {summary['layers_in_fit']} {kind} layers at epoch "
            f"{summary['first_epoch']}, the norm changes by a factor of "
            f"{fmt_ratio(summary['decay_per_layer'])} per layer going back towards the input "
            f"({fmt_db(summary['db_per_layer'])} per layer, R² = {fmt_r2(summary['r2'])}); "
            f"verdict from the first-to-last ratio: {verdicts}.")


def layer_2_vs_10_sentence(name: str, run: RunData, summary: Mapping[str, Any]) -> str | None:
    """The assignment's form: "layer 2's norm is X times layer 10's" (conv layers, 1-based)."""
    layers = conv_layers(run, summary["metric"])
    epoch = summary.get("first_epoch")
    if len(layers) < 3 or epoch is None:
        return None
    low_index, high_index = 1, min(9, len(layers) - 1)
    (low, _), (high, _) = layers[low_index], layers[high_index]
    low_mean = _mean_at(run, summary["metric"], low, epoch)
    high_mean = _mean_at(run, summary["metric"], high, epoch)
    if not (math.isfinite(low_mean) and math.isfinite(high_mean)) or high_mean == 0:
        return None
    kind = summary.get("fit_kind") or "conv"
    return (f"Counting {kind} layers from the input in {name}, layer {low_index + 1} ({low}) "
            f"has {fmt_ratio(low_mean / high_mean)}× the norm of layer {high_index + 1} ({high}) "
            f"at epoch {epoch}.")


def span_sentence(name: str, run: RunData, summary: Mapping[str, Any]) -> str | None:
    """Step 3: the range of the conv layers' norms at the first epoch."""
    epoch = summary.get("first_epoch")
    if epoch is None:
        return None
    means = run_epoch_means(run, summary["metric"])
    rows = means.loc[(means["epoch"] == epoch) & (means["kind"] == summary["fit_kind"])]
    rows = rows.loc[np.isfinite(rows["mean"])]
    if rows.empty:
        return None
    low, high = rows.loc[rows["mean"].idxmin()], rows.loc[rows["mean"].idxmax()]
    spread = high["mean"] / low["mean"] if low["mean"] > 0 else math.inf
    return (f"At epoch {epoch} the {summary['fit_kind']} layers' epoch-mean norms in {name} run "
            f"from {fmt_ratio(low['mean'])} ({low['layer']}, depth {int(low['depth'])}) to "
            f"{fmt_ratio(high['mean'])} ({high['layer']}, depth {int(high['depth'])}), a spread "
            f"of {fmt_ratio(spread)}×.")


# ---------------------------------------------------------------------------- comparisons
def _distance_from_one(ratio: float | None) -> float:
    """Decades between a ratio and 1: how far gradient flow is from even."""
    if ratio is None or ratio <= 0 or not math.isfinite(ratio):
        return math.inf
    return abs(math.log10(ratio))


def accuracy_sentences(names: Sequence[str], summaries: Mapping[str, dict]) -> list[str]:
    """Test-accuracy ranking and when each run first reached the target validation accuracy."""
    sentences = []
    scored = [(n, summaries[n]["test_acc"]) for n in names
              if summaries[n].get("test_acc") is not None]
    if len({fmt_pct(acc) for _, acc in scored}) == 1 and len(scored) > 1:
        sentences.append(f"Every run reaches the same test accuracy, {fmt_pct(scored[0][1])}.")
    elif scored:
        scored.sort(key=lambda item: -item[1])
        ranking = join_words([f"{n} ({fmt_pct(acc)})" for n, acc in scored])
        sentences.append(f"Test accuracy, best first: {ranking}.")
    target = next(iter(summaries.values()), {}).get("target_acc")
    reached = [(n, summaries[n]["epochs_to_target"]) for n in names
               if summaries[n].get("epochs_to_target") is not None]
    missed = [n for n in names if summaries[n].get("epochs_to_target") is None
              and summaries[n].get("best_val_acc") is not None]
    if target is None or not (reached or missed):
        return sentences
    if reached:
        parts = join_words([f"{n} at epoch {e}" for n, e in reached])
        text = f"Validation accuracy first reached {fmt_pct(target)}: {parts}"
        sentences.append(text + (f"; {join_words(missed)} never did." if missed else "."))
    else:
        best = max(missed, key=lambda n: summaries[n]["best_val_acc"])
        sentences.append(f"No run here reached {fmt_pct(target)} validation accuracy (the best "
                         f"is {fmt_pct(summaries[best]['best_val_acc'])}, {best}).")
    return sentences


def flow_sentences(names: Sequence[str], summaries: Mapping[str, dict]) -> list[str]:
    """Which of `names` vanish, explode or stay healthy at their first epoch."""
    groups: dict[str, list[str]] = {}
    for name in names:
        summary = summaries[name]
        if summary.get("first_to_last_ratio") is None:
            continue
        groups.setdefault(summary["verdict"], []).append(
            f"{name} ({fmt_ratio(summary['first_to_last_ratio'])})")
    if not groups:
        return ["No run here recorded usable gradient data, so gradient flow cannot be compared."]
    parts = [f"{verdict}: {join_words(items)}" for verdict, items in sorted(groups.items())]
    return [f"First-to-last ratio at the first epoch, by verdict: {'; '.join(parts)}."]


def variant_label(experiment: Mapping[str, Any], name: str, run: RunData) -> str:
    """"norm=batch" for an experiment's run, from its axes (else from its name)."""
    axes = experiment.get("axes") or {}
    parts = []
    for key in axes:
        value = _config_value(run, str(key))
        if value is None:
            parts = []
            break
        parts.append(f"{key}={value}")
    if parts:
        return ", ".join(parts)
    prefix = f"{experiment.get('name')}."
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name


def _config_value(run: RunData, key: str) -> Any:
    """An axis value from the run's config: "norm", "model.norm", "lr", "model" (its name)."""
    config = run.run_config
    if "." in key:
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return _scalar(node)
    if isinstance(config.get(key), dict):
        return _scalar(config[key])
    for section in ("model", "train", "data", "probe"):
        block = config.get(section) or {}
        if key in block:
            value = block[key]
            if value is None and key in run.model_info:
                value = run.model_info[key]  # None = the family default, which model_info names
            return _scalar(value)
    return _scalar(run.model_info.get(key))  # e.g. the `residual` axis, which swaps the model


def format_value(value: Any) -> str:
    """A config or axis value as YAML writes it: true/false, not Python's True/False."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return format_value(value)
    if isinstance(value, dict):
        return value.get("name")
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return value


def experiment_findings(
    labels: Mapping[str, str], runs: Mapping[str, RunData], summaries: Mapping[str, dict]
) -> list[str]:
    """Step 5's finding for one experiment, from its variants' numbers."""
    sentences: list[str] = []
    usable = [n for n in labels if summaries[n].get("first_to_last_ratio") is not None]
    for name in labels:
        if runs[name].state in ("failed", "missing"):
            sentences.append(f"{labels[name]} has no result: {state_text(runs[name])}.")
    if usable:
        parts = []
        for name in usable:
            summary = summaries[name]
            part = (f"{fmt_ratio(summary['first_to_last_ratio'])} ({summary['verdict']}) with "
                    f"{labels[name]}")
            if runs[name].state == "diverged":
                part += f", which {state_text(runs[name])}"
            parts.append(part)
        epochs = {summaries[n]["first_epoch"] for n in usable}
        at = f"epoch {epochs.pop()}" if len(epochs) == 1 else "each run's first epoch"
        if len(parts) == 2:
            sentences.append(f"At {at} the first-to-last ratio is {parts[0]}, against {parts[1]}.")
        else:
            sentences.append(f"At {at} the first-to-last ratio is {join_words(parts)}.")
        verdicts = {summaries[n]["verdict"] for n in usable}
        if len(usable) > 1 and len(verdicts) == 1:
            every = "both" if len(usable) == 2 else f"all {len(usable)}"
            sentences.append(f"By the {VERDICT_THRESHOLDS.vanishing_below:g}-"
                             f"{VERDICT_THRESHOLDS.exploding_above:g} rule {every} variants are "
                             f"{verdicts.pop()}, so on this measure the axis does not change the "
                             "verdict.")
        if len(usable) > 1:
            best = min(usable,
                       key=lambda n: _distance_from_one(summaries[n]["first_to_last_ratio"]))
            sentences.append(f"The most even gradient flow (ratio nearest 1) is with "
                             f"{labels[best]}.")
    else:
        sentences.append("No variant recorded usable gradient data.")
    accurate = [n for n in labels if summaries[n].get("best_val_acc") is not None]
    if len(accurate) > 1:
        accurate.sort(key=lambda n: -summaries[n]["best_val_acc"])
        ranking = join_words([f"{labels[n]} {fmt_pct(summaries[n]['best_val_acc'])}"
                              for n in accurate])
        sentences.append(f"Best validation accuracy, highest first: {ranking}.")
    return sentences


# ---------------------------------------------------------------------------- Step 6
def _listed(names: Sequence[str], summaries: Mapping[str, dict]) -> str:
    return join_words([f"{n} ({fmt_ratio(summaries[n]['first_to_last_ratio'])})" for n in names])


def answer_sentences(
    study: StudyData, summaries: Mapping[str, dict], featured: Sequence[str]
) -> list[str]:
    """Step 6(a): do the compared models (then the whole study) show vanishing gradients?"""
    with_data = [n for n in study.runs if summaries[n].get("first_to_last_ratio") is not None]
    if not with_data:
        return ["No run recorded usable gradient data, so this study cannot say whether gradients "
                "vanish."]
    sentences = []
    for name in featured:
        summary, run = summaries[name], study.runs[name]
        for sentence in (ratio_sentence(name, run, summary),
                         layer_2_vs_10_sentence(name, run, summary), fit_sentence(summary)):
            if sentence:
                sentences.append(sentence)
    low, high = VERDICT_THRESHOLDS.vanishing_below, VERDICT_THRESHOLDS.exploding_above
    compared = [n for n in featured if n in with_data]
    vanishing = [n for n in compared if summaries[n]["verdict"] == "vanishing"]
    others = [n for n in compared if n not in vanishing]
    if vanishing:
        text = (f"Yes for {_listed(vanishing, summaries)}: at the first epoch the conv layer "
                f"nearest the input receives less than {low:g}× the gradient norm of the one "
                "nearest the output")
        sentences.append(text + (f"; not for {_listed(others, summaries)}." if others else "."))
    elif compared:
        smallest = min(compared, key=lambda n: summaries[n]["first_to_last_ratio"])
        sentences.append(
            f"No: the data do not show vanishing gradients in the compared "
            f"{'model' if len(compared) == 1 else 'models'}. Every first-to-last ratio at the "
            f"first epoch is at or above {low:g}: {_listed(compared, summaries)}; the smallest "
            f"is {smallest}'s.")
        he_relu = [n for n in compared
                   if study.runs[n].model_info.get("init") == "kaiming"
                   and study.runs[n].model_info.get("activation") == "relu"]
        if he_relu:
            sentences.append(
                f"This is what theory predicts for ReLU nets with He initialisation "
                f"({join_words(he_relu)}): that init keeps each layer's gain near 1 "
                "(He et al. 2015).")
    rest = [n for n in with_data if n not in compared]
    if rest:
        rest_vanishing = [n for n in rest if summaries[n]["verdict"] == "vanishing"]
        if rest_vanishing:
            sentences.append(f"Among the study's other {_plural(len(rest), 'run')}, "
                             f"{len(rest_vanishing)} "
                             f"{'shows' if len(rest_vanishing) == 1 else 'show'} vanishing "
                             "gradients: "
                             f"{_listed(rest_vanishing, summaries)}.")
        else:
            sentences.append(f"None of the study's other {_plural(len(rest), 'run')} shows "
                             f"vanishing gradients (every ratio is at or above {low:g}).")
    exploding = [n for n in with_data if summaries[n]["verdict"] == "exploding"]
    if exploding:
        sentences.append(f"Gradients grow towards the input (ratio above {high:g}) in "
                         f"{_listed(exploding, summaries)}.")
    return sentences


def chain_rule_sentences(study: StudyData, summaries: Mapping[str, dict]) -> list[str]:
    """Step 6(b): the steepest fitted decay, compounded, against the measured ratio."""
    fitted = [n for n in study.runs if summaries[n].get("decay_per_layer") is not None
              and summaries[n].get("first_to_last_ratio") is not None]
    if not fitted:
        return []
    steepest = min(fitted, key=lambda n: summaries[n]["decay_per_layer"])
    summary = summaries[steepest]
    steps = summary["last_depth"] - summary["first_depth"]
    predicted = summary["decay_per_layer"] ** steps
    sentence = (f"In this study the steepest fitted decay is "
                f"{fmt_ratio(summary['decay_per_layer'])} per layer ({steepest}, "
                f"R² = {fmt_r2(summary['r2'])}); compounded over the "
                f"{steps} layers between its first and last conv layer it predicts a "
                f"first-to-last ratio of {fmt_ratio(predicted)}, and the measured one is "
                f"{fmt_ratio(summary['first_to_last_ratio'])}.")
    if summary["decay_per_layer"] >= 1.0:
        sentence += (" Since that factor is not below 1, no run's gradients shrink layer by layer "
                     "on average here.")
    return [sentence]


def _group_text(names: Sequence[str], summaries: Mapping[str, dict], key: str) -> str:
    values = [summaries[n][key] for n in names]
    if len(names) <= 4:
        return join_words([f"{n} {fmt_ratio(v)}" for n, v in zip(names, values, strict=True)])
    return (f"median {fmt_ratio(statistics.median(values))} over {len(names)} runs "
            f"(from {fmt_ratio(min(values))} to {fmt_ratio(max(values))})")


def _config_key(run: RunData, ignore: str) -> str:
    """The run's config as canonical JSON without the one field `ignore` ("model.name"), plus
    its conv layer count, so that only twins of one depth match (not VGG-Deep and ResNet-18)."""
    config = json.loads(json.dumps(run.run_config, default=str))
    section, _, field_name = ignore.partition(".")
    (config.get(section) or {}).pop(field_name, None)
    shape = {key: run.model_info.get(key) for key in ("conv_layers", "linear_layers")}
    return json.dumps({"config": config, "shape": shape}, sort_keys=True)


def matched_pairs(
    study: StudyData, names: Sequence[str], ignore: str, feature: Callable[[RunData], bool]
) -> list[tuple[str, str]]:
    """(without, with) pairs of runs whose configs agree except in `ignore`, where `feature`
    is false for the first and true for the second: a controlled comparison. Identical runs
    (one config trained under two names) count once."""
    groups: dict[str, dict[bool, str]] = {}
    for name in names:
        run = study.runs[name]
        groups.setdefault(_config_key(run, ignore), {}).setdefault(feature(run), name)
    return [(group[False], group[True]) for group in groups.values()
            if False in group and True in group]


def _pair_sentences(pairs: Sequence[tuple[str, str]], summaries: Mapping[str, dict],
                    without: str, with_: str, differ: str, *, predicted: bool) -> list[str]:
    """"Twins that differ only in X: a r against b r; ... closer to even in k of n pairs."""
    def ratio(name: str) -> str:
        return f"{name} {fmt_ratio(summaries[name]['first_to_last_ratio'])}"

    listed = "; ".join(f"{ratio(a)} against {ratio(b)}" for a, b in pairs)
    closer = sum(_distance_from_one(summaries[b]["first_to_last_ratio"])
                 < _distance_from_one(summaries[a]["first_to_last_ratio"]) for a, b in pairs)
    better = [(a, b) for a, b in pairs if summaries[a].get("best_val_acc") is not None
              and summaries[b].get("best_val_acc") is not None]
    higher = sum(summaries[b]["best_val_acc"] > summaries[a]["best_val_acc"] for a, b in better)
    sentences = [f"Runs that differ only in {differ}, first-epoch first-to-last ratio "
                 f"{without} against {with_}: {listed}."]
    text = (f"The {with_} run's ratio is closer to 1 (more even gradient flow) in {closer} of "
            f"{_plural(len(pairs), 'pair')}")
    if predicted:  # only where theory predicts more even flow (the identity path)
        text += (", as predicted" if 2 * closer > len(pairs)
                 else ", so these data do not show the predicted benefit" if closer == 0
                 else ", so the data are mixed")
    if better:
        text += (f"; the {with_} run's best validation accuracy is higher in {higher} of "
                 f"{len(better)}")
    return [*sentences, text + "."]


def residual_sentences(study: StudyData, summaries: Mapping[str, dict]) -> list[str]:
    """Step 6(c): residual against plain twins (else groups), first-epoch ratios."""
    with_data = [n for n in study.runs if summaries[n].get("first_to_last_ratio") is not None]
    residual = [n for n in with_data if study.runs[n].model_info.get("residual")]
    plain = [n for n in with_data if not study.runs[n].model_info.get("residual")]
    if not residual:
        return ["This study has no residual run with gradient data, so it cannot test this here."]
    if not plain:
        listed = _group_text(residual, summaries, "first_to_last_ratio")
        return [f"This study has only residual runs ({listed}), so it has no plain net to "
                "compare them with."]
    pairs = matched_pairs(study, with_data, "model.name",
                          lambda run: bool(run.model_info.get("residual")))
    if pairs:
        return _pair_sentences(pairs, summaries, "plain", "residual",
                               "the identity shortcut (a plain net and its residual twin)",
                               predicted=True)
    res_distance = statistics.median(_distance_from_one(summaries[n]["first_to_last_ratio"])
                                     for n in residual)
    plain_distance = statistics.median(_distance_from_one(summaries[n]["first_to_last_ratio"])
                                       for n in plain)
    sentences = [
        f"First-epoch first-to-last ratios in this study: residual "
        f"{_group_text(residual, summaries, 'first_to_last_ratio')}; plain "
        f"{_group_text(plain, summaries, 'first_to_last_ratio')}."
    ]
    if res_distance < plain_distance:
        sentences.append(
            f"The residual runs sit closer to even flow (median {res_distance:.2f} decades from a "
            f"ratio of 1, against {plain_distance:.2f} for the plain runs), as the identity path "
            "predicts; no plain run here is the exact twin of a residual one, so other "
            "differences may contribute.")
    else:
        sentences.append(
            f"The data do not show the residual runs' gradients flowing more evenly (median "
            f"{res_distance:.2f} decades from a ratio of 1, against {plain_distance:.2f} for the "
            "plain runs); no plain run here is the exact twin of a residual one.")
    return sentences


def batch_norm_sentences(study: StudyData, summaries: Mapping[str, dict]) -> list[str]:
    """Step 6(d): with against without batch norm, and Yang et al.'s growth at initialisation."""
    with_data = [n for n in study.runs if summaries[n].get("first_to_last_ratio") is not None]
    bn = [n for n in with_data if study.runs[n].model_info.get("norm") == "batch"]
    plain_bn = [n for n in bn if not study.runs[n].model_info.get("residual")]
    no_norm = [n for n in with_data if study.runs[n].model_info.get("norm") in ("none", None)]
    if not bn:
        return ["This study has no batch-normalised run with gradient data, so it cannot test "
                "this here."]
    pairs = matched_pairs(study, with_data, "model.norm",
                          lambda run: run.model_info.get("norm") == "batch")
    if pairs:
        sentences = _pair_sentences(pairs, summaries, "without", "batch-normalised",
                                    "batch normalisation", predicted=False)
    else:
        sentences = [f"First-epoch first-to-last ratios: with batch norm "
                     f"{_group_text(bn, summaries, 'first_to_last_ratio')}"
                     + (f"; without {_group_text(no_norm, summaries, 'first_to_last_ratio')}."
                        if no_norm else "; the study has no run without normalisation.")]
    at_init = [n for n in plain_bn
               if summaries[n].get("first_to_last_ratio_first_step") is not None]
    if not at_init:
        return [*sentences, "The study has no plain (non-residual) batch-normalised run, so Yang "
                            "et al.'s growth towards the input cannot be checked here."]

    def at_step(names: Sequence[str]) -> str:
        return join_words([f"{n} ({fmt_ratio(summaries[n]['first_to_last_ratio_first_step'])})"
                           for n in names])

    growing = [n for n in at_init if summaries[n]["first_to_last_ratio_first_step"] > 1.0]
    others = [n for n in at_init if n not in growing]
    if growing:
        text = ("At the first recorded step (initialisation), gradients are larger at the input "
                f"than at the output (ratio above 1) in plain batch-normalised {at_step(growing)}")
        if others:
            text += f"; not in {at_step(others)}"
        sentences.append(text + ". That growth towards the input is what Yang et al. (2019) "
                         "predict for plain nets with batch norm.")
    else:
        sentences.append(
            f"At the first recorded step (initialisation), the plain batch-normalised runs do not "
            f"show gradients growing towards the input ({at_step(others)}, none above 1); Yang et "
            "al.'s growth builds up with depth and may be too small to see here.")
    return sentences
