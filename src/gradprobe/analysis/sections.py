"""The report's fixed-form sections: method (definitions), overview of the runs, and setup
(dataset, architectures, training), built from tables; no figures."""

from __future__ import annotations

import math

from gradprobe.analysis import tables
from gradprobe.analysis.format import fmt_db, fmt_pct
from gradprobe.analysis.load import StudyData
from gradprobe.analysis.summary import VERDICT_THRESHOLDS
from gradprobe.analysis.text import Block, bullets, h3, p, table
from gradprobe.metrics import metric_info
from gradprobe.record import RunState


def method_blocks(study: StudyData, metric: str, target_acc: float) -> list[Block]:
    low, high = VERDICT_THRESHOLDS.vanishing_below, VERDICT_THRESHOLDS.exploding_above
    every = next((run.run_config.get("probe", {}).get("every") for run in study.runs.values()
                  if run.run_config.get("probe")), None)
    cadence = "every optimiser step" if every in (None, 1) else f"every {every} optimiser steps"
    halving_db = fmt_db(10.0 * math.log10(0.5))
    return [bullets([
        f"Gradient metric: {metric_info(metric).label} ({metric}), recorded per layer at "
        f"{cadence}. "
        "A layer's norm at an epoch is the mean of its per-step values over that epoch; NaN or "
        "infinite values (near a divergence) are left out.",
        "First-to-last ratio: the epoch-mean norm of the conv layer nearest the input divided by "
        "that of the conv layer nearest the output. Below 1, the gradient shrinks on its way back "
        "to the input.",
        "Decay per layer: least squares of log10(norm) against depth over the conv layers. The "
        "factor 10^(-slope) is the change per layer going backward, from the output towards the "
        "input (0.5 = halves at every layer). dB per layer = 10·log10(factor), a power-style "
        f"decibel, so halving is {halving_db} per layer. R² says how well one constant factor "
        "per layer describes the profile.",
        f"Verdict at an epoch: vanishing if the ratio is below {low:g}, exploding if it is above "
        f"{high:g}, healthy in between. The first epoch is the one nearest initialisation.",
        "Shortcut (1×1 projection) convs and linear layers are drawn but left out of the ratio "
        "and the fit; in a net without convs, its linear layers are used.",
        f"Epochs to target: the first epoch whose validation accuracy reaches "
        f"{fmt_pct(target_acc)}.",
    ])]


def overview_blocks(study: StudyData) -> list[Block]:
    rows = tables.overview_rows(study)
    blocks = [table(["run", "model", "outcome", "epochs"],
                    [[r["run"], r["model"], r["outcome"], r["epochs"]] for r in rows])]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    blocks.insert(0, p(f"The study holds {len(rows)} runs: "
                       + ", ".join(f"{count} {state}" for state, count in counts.items()) + "."))
    notes = list(study.problems)
    for name, run in study.runs.items():
        if run.problems and (run.state is RunState.COMPLETED  # damage: whatever the state
                             or any("is damaged" in problem for problem in run.problems)):
            notes.append(f"{name}: {'; '.join(run.problems)}")
    if notes:
        blocks.append(p("Notes on the records:"))
        blocks.append(bullets(notes))
    return blocks


def setup_blocks(study: StudyData) -> list[Block]:
    blocks: list[Block] = [h3("Dataset")]
    data = tables.dataset_facts(study)
    if not data["known"]:
        blocks.append(p("No run recorded its dataset (every run failed before loading it)."))
    else:
        size = data["image_size"]
        kind = "" if data["kind"] == data["dataset"] else f" ({data['kind']})"
        blocks.append(p(
            f"Dataset {data['dataset']}{kind}: {data['class_count']} classes, images "
            f"resized to {size}×{size}, split {data['split']} (train/val/test) with seed "
            f"{data['seed']}; fingerprint {data['fingerprint']}."))
        blocks.append(table(data["class_columns"], data["class_rows"]))
        if data["skipped_files"]:
            blocks.append(p(f"{data['skipped_files']} files of the dataset could not be read "
                            "and were skipped."))
        blocks.append(table(["split", "images"], [[c["split"], c["images"]]
                                                  for c in data["counts"]]))
        if not data["same_everywhere"]:
            blocks.append(p("Warning: not every run used the same data (their fingerprints "
                            "differ); the table shows the data of " + data["source_run"] + "."))
    blocks.append(h3("Architectures"))
    rows = tables.architecture_rows(study)
    keys = ["run", "model", "family", "residual", "width", "norm", "activation", "init",
            "conv_layers", "linear_layers", "parameters"]
    blocks.append(table(["run", "model", "family", "residual", "width", "norm", "activation",
                         "init", "conv layers", "linear layers", "parameters"],
                        [[row[key] for key in keys] for row in rows]))
    blocks.append(h3("Training setup"))
    keys = ["epochs", "batch", "optimizer", "lr", "momentum", "scheduler", "seed", "device"]
    groups: dict[tuple[str, ...], list[str]] = {}  # one row per distinct setup
    for row in tables.training_rows(study):
        groups.setdefault(tuple(row[key] for key in keys), []).append(row["run"])
    rows = [[f"all {len(names)} runs" if len(groups) == 1 and len(names) > 1
             else ", ".join(names), *setup] for setup, names in groups.items()]
    blocks.append(table(["runs", "epochs", "batch", "optimiser", "learning rate", "momentum",
                         "schedule", "seed", "device"], rows))
    return blocks
