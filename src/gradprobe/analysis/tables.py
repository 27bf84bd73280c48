"""Table rows of the report: runs, dataset, architectures, training setups and results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from gradprobe.analysis.format import fmt_count
from gradprobe.analysis.groups import ConfigurationSummary
from gradprobe.analysis.load import StudyData
from gradprobe.analysis.replicates import Estimate, format_estimate
from gradprobe.analysis.states import state_text
from gradprobe.analysis.summary import verdict
from gradprobe.analysis.text import Block, table
from gradprobe.record import Col


def overview_rows(study: StudyData) -> list[dict[str, str]]:
    rows = []
    for name, run in study.runs.items():
        epochs = run.metrics[Col.epoch].max() if not run.metrics.empty else None
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
            # linear learning-rate warm-up over the first epochs (absent in older runs: none)
            "warmup": f"{train.get('warmup_epochs') or 0:g}",
            "scheduler": scheduler,
            "seed": str(train.get("seed", "n/a")),
            "device": str(run.config.get("device", train.get("device", "n/a"))),
        })
    return rows


CONFIGURATION_HEADERS = ("configuration", "seeds", "outcome", "best val acc", "test acc",
                         "ratio, first epoch", "ratio, last epoch", "dB per layer, first epoch",
                         "verdict")


def configuration_table(groups: Sequence[ConfigurationSummary]) -> Block:
    """The comparison / experiment table: one row per configuration."""
    return table(list(CONFIGURATION_HEADERS), [configuration_row(group) for group in groups])


def configuration_row(summary: ConfigurationSummary) -> list[str]:
    """One row of the comparison / experiment tables: a configuration over its seeds, each
    number as mean [95% interval] (n); ratios as geometric means."""
    states = Counter(str(state) for state in summary.states)
    outcome = ", ".join(f"{count} {state}" for state, count in states.items())
    first = verdict(summary.ratio_first.centre if summary.ratio_first.n else None)
    last = verdict(summary.ratio_last.centre if summary.ratio_last.n else None)
    return [
        summary.name, str(summary.seeds), outcome,
        format_estimate(summary.best_val_acc, percent=True),
        format_estimate(summary.test_acc, percent=True),
        _at_epoch(format_estimate(summary.ratio_first), summary.ratio_first, summary.first_epoch),
        _at_epoch(format_estimate(summary.ratio_last), summary.ratio_last, summary.last_epoch),
        format_estimate(summary.db_first),
        first if first == last else f"{first} → {last}",
    ]


def _at_epoch(text: str, value: Estimate, epoch: int | None) -> str:
    return text if epoch is None or value.n == 0 else f"{text}, epoch {epoch}"
