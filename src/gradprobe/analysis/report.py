"""`write_report`: a study directory's figures, a Markdown report and a self-contained HTML one.

The report follows the assignment's structure (Steps 1-6). It is assembled here as a list of
plain-text blocks per section (numbers from `summary.py`, table rows from `tables.py`, fixed
sections from `sections.py`, sentences from `findings.py` and `answers.py`, theory from `text.py`,
figures from `figures/`) and rendered by `render.py`'s two jinja2 templates: HTML with autoescape
on (every user string, such as a class folder name, is escaped), Markdown with every value
escaped for Markdown. The HTML embeds its figures as base64 PNG data URIs, so it works offline as
a single file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from gradprobe.analysis import answers, findings, tables
from gradprobe.analysis import figures as draw
from gradprobe.analysis.format import format_value, join_words
from gradprobe.analysis.load import RunData, StudyData, load_study
from gradprobe.analysis.render import environments
from gradprobe.analysis.sections import method_blocks, overview_blocks, setup_blocks
from gradprobe.analysis.states import state_text
from gradprobe.analysis.summary import (
    DEFAULT_TARGET_ACC,
    RunAnalysis,
    check_metric,
    summarize_run,
)
from gradprobe.analysis.text import (
    REFERENCES,
    REPORT_LIBRARIES,
    WHAT_BATCH_NORM_DOES,
    WHY_RESIDUAL,
    WHY_VANISH,
    Block,
    bullets,
    h3,
    p,
    table,
)
from gradprobe.analysis.theory_text import theory_blocks
from gradprobe.errors import InputError
from gradprobe.metrics import metric_info
from gradprobe.record import FIGURES_DIR, REPORT_HTML, REPORT_MD, GradCol, RunState
from gradprobe.util.atomic import write_text_atomic

MAX_FEATURED_RUNS = 12  # per-run figures (3 each) for at most this many runs


@dataclass(frozen=True)
class Experiment:
    """A Step 5 experiment resolved against the study's runs."""

    name: str
    title: str
    question: str
    axes: dict[str, Any]
    labels: dict[str, str]  # run name -> variant label ("norm=batch"), runs the study holds
    missing: list[str]  # runs the spec lists that the study does not hold


# ---------------------------------------------------------------------------- selection
def _slug(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique form of a run or experiment name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "run"
    slug, index = base, 2
    while slug in taken:
        slug, index = f"{base}-{index}", index + 1
    taken.add(slug)
    return slug


def _comparison(study: StudyData) -> tuple[str, list[str], list[str]]:
    """Title, runs present and runs missing of the spec's comparison (else every plain run)."""
    comparison = study.spec.get("comparison") or {}
    listed = [str(name) for name in comparison.get("runs") or []]
    if listed:
        present = [name for name in listed if name in study.runs]
        missing = [name for name in listed if name not in study.runs]
        return str(comparison.get("title") or "Comparison"), present, missing
    in_experiments = {str(name) for entry in study.spec.get("experiments") or []
                      for name in entry.get("runs") or []}
    others = [name for name in study.runs if name not in in_experiments] or list(study.runs)
    return "Comparison of the runs", others, []


def _experiments(study: StudyData) -> list[Experiment]:
    resolved = []
    for entry in study.spec.get("experiments") or []:
        listed = [str(name) for name in entry.get("runs") or []]
        labels = {name: _variant_label(entry, name) for name in listed if name in study.runs}
        if len(set(labels.values())) < len(labels):  # axes that do not tell the runs apart
            labels = {name: name for name in labels}
        resolved.append(Experiment(
            name=str(entry.get("name", "experiment")),
            title=str(entry.get("title") or entry.get("name") or "Experiment"),
            question=str(entry.get("question") or ""),
            axes=dict(entry.get("axes") or {}),
            labels=labels,
            missing=[name for name in listed if name not in study.runs],
        ))
    return resolved


def _variant_label(experiment: Mapping[str, Any], name: str) -> str:
    """A run's label in an experiment: the one the study spec wrote into its `labels`
    ("norm=batch"); else the run name without the "<experiment>." prefix the spec gives it."""
    written = experiment.get("labels") or {}
    if isinstance(written, dict) and written.get(name) is not None:
        return str(written[name])
    prefix = f"{experiment.get('name')}."
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name


def _recorded_metrics(study: StudyData) -> set[str]:
    return {m for run in study.runs.values() for m in run.gradients[GradCol.metric].unique()}


def _check_inputs(study: StudyData, metric: str, target_acc: float,
                  subset_layers: Sequence[str] | None, featured: Sequence[str]) -> None:
    check_metric(metric)
    if not 0.0 < target_acc <= 1.0:
        raise InputError(f"target_acc must be a fraction in (0, 1], got {target_acc}. Pass e.g. "
                         "0.8 for 80% validation accuracy.")
    recorded = _recorded_metrics(study)
    if recorded and metric not in recorded:
        raise InputError(f"No run of this study recorded {metric!r}. Pick one of the recorded "
                         f"metrics: {', '.join(sorted(recorded))}.")
    if subset_layers:
        known = {layer for name in featured
                 for layer in study.runs[name].gradients[GradCol.layer].unique()}
        if known and not set(subset_layers) & known:
            raise InputError(f"None of the layers {list(subset_layers)} was recorded by the runs "
                             f"plotted per model. Recorded layers include: "
                             f"{', '.join(sorted(known)[:15])}.")


# ---------------------------------------------------------------------------- figures
class _Figures:
    """Draws figures into study_dir/figures and hands out blocks that show them."""

    def __init__(self, study_dir: Path) -> None:
        self.study_dir = study_dir
        self.written: dict[str, Path] = {}
        self._taken: set[str] = set()

    def path(self, stem: str) -> Path:
        return self.study_dir / FIGURES_DIR / f"{_slug(stem, self._taken)}.png"

    def block(self, path: Path, alt: str, caption: str) -> Block:
        key = path.relative_to(self.study_dir).as_posix()
        self.written[key] = path
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return Block("figure", text=caption, path=key, data_uri=f"data:image/png;base64,{data}",
                     alt=alt)


def _profile_metrics(study: StudyData, metric: str) -> list[str]:
    """The report's metric, plus output_grad_norm beside it when recorded."""
    recorded = _recorded_metrics(study)
    extra = [m for m in ("output_grad_norm",) if m in recorded and m != metric]
    return [metric, *extra]


# ---------------------------------------------------------------------------- sections
def _run_figure_blocks(figures: _Figures, name: str, run: RunData, summary: RunAnalysis,
                       metric: str, subset_layers: Sequence[str] | None) -> list[Block]:
    blocks: list[Block] = [h3(name)]
    if run.state in (RunState.FAILED, RunState.MISSING) or run.gradients.empty:
        blocks.append(p(f"{name} has no gradient records to draw: {state_text(run)}."))
        return blocks
    if run.state is not RunState.COMPLETED:
        blocks.append(p(f"{name} {state_text(run)}; the figures show its records up to "
                        "there" + (", and a dashed red line marks the divergence."
                                   if run.state is RunState.DIVERGED else ".")))
    label = metric_info(metric).label
    sentence = findings.span_sentence(name, run, summary)
    if sentence:
        blocks.append(p(sentence))
    path = draw.plot_layer_norms(run, metric, figures.path(f"{name}-all-layers"))
    blocks.append(figures.block(path, f"{name}: {label} of every layer against step",
                                f"{name}: every layer's {label} against optimiser step, coloured "
                                "by depth; bold: the mean over each epoch."))
    subset = [layer for layer in subset_layers if layer in set(run.gradients[GradCol.layer])] \
        if subset_layers else draw.default_subset(run, metric)
    if subset_layers and len(subset) < len(subset_layers):
        absent = [layer for layer in subset_layers if layer not in subset]
        blocks.append(p(f"{name} has no records for {', '.join(absent)}."))
    if subset:
        path = draw.plot_layer_subset(run, metric, subset, figures.path(f"{name}-subset"))
        blocks.append(figures.block(path, f"{name}: {label} of selected layers",
                                    f"{name}: {', '.join(subset)}."))
    path = draw.plot_heatmap(run, metric, figures.path(f"{name}-heatmap"))
    blocks.append(figures.block(path, f"{name}: layer by epoch heat map",
                                f"{name}: log10 of each layer's epoch-mean {label}, input at the "
                                "top."))
    return blocks


def _result_table(names: Sequence[str], summaries: Mapping[str, RunAnalysis],
                  labels: Mapping[str, str] | None = None) -> Block:
    headers = ["run", "outcome", "best val acc", "final val acc", "test acc", "epochs to target",
               "ratio, first epoch", "ratio, last epoch", "factor per layer", "dB per layer",
               "R²", "verdict"]
    rows = []
    for name in names:
        row = tables.result_row(labels[name] if labels else name, summaries[name])
        rows.append([row[key] for key in ("run", "outcome", "best_val_acc", "final_val_acc",
                                          "test_acc", "epochs_to_target", "ratio_first",
                                          "ratio_last", "factor", "db", "r2", "verdict")])
    return table(headers, rows)


def _comparison_blocks(figures: _Figures, study: StudyData, summaries: Mapping[str, RunAnalysis],
                       metric: str) -> list[Block]:
    title, names, missing = _comparison(study)
    blocks: list[Block] = [p(f"{title}: {join_words(names)}.")] if names else []
    if missing:
        blocks.append(p("The comparison lists runs the study does not hold: "
                        f"{', '.join(missing)}."))
    if not names:
        return [*blocks, p("There are no runs to compare.")]
    runs = {name: study.runs[name] for name in names}
    if any(not run.gradients.empty for run in runs.values()):
        path = draw.plot_depth_profiles(runs, _profile_metrics(study, metric),
                                         figures.path("comparison-depth-profile"),
                                         f"{title}: gradient norm against depth")
        blocks.append(figures.block(
            path, "depth profiles of the compared models",
            "Each layer's epoch-mean norm against depth, at the first epoch (dashed, hollow) and "
            "the last (solid): a profile falling towards depth 0 is a vanishing gradient."))
    if any(not run.metrics.empty for run in runs.values()):
        path = draw.plot_training_curves(runs, figures.path("comparison-training-curves"),
                                          f"{title}: training curves")
        blocks.append(figures.block(path, "training curves of the compared models",
                                    "Loss and accuracy per epoch: train solid, validation "
                                    "dashed."))
    blocks.append(_result_table(names, summaries))
    blocks += [p(s) for s in findings.accuracy_sentences(names, summaries)]
    blocks += [p(s) for s in findings.flow_sentences(names, summaries)]
    return blocks


def _experiment_blocks(figures: _Figures, study: StudyData, experiment: Experiment,
                       summaries: Mapping[str, RunAnalysis],
                       metric: str) -> tuple[list[Block], list[str]]:
    blocks: list[Block] = [h3(experiment.title)]
    if experiment.question:
        blocks.append(p(f"Question: {experiment.question}"))
    axes = "; ".join(
        f"{key} ∈ {{{', '.join(format_value(v) for v in values)}}}"
        if isinstance(values, (list, tuple)) else f"{key} = {format_value(values)}"
        for key, values in experiment.axes.items())
    if axes:
        blocks.append(p(f"Setup: {axes}; everything else as in the runs' configs (Steps 1-2)."))
    if experiment.missing:
        blocks.append(p(f"Runs listed but not in the study: {', '.join(experiment.missing)}."))
    if not experiment.labels:
        return [*blocks, p("None of its runs is in the study.")], []
    runs = {label: study.runs[name] for name, label in experiment.labels.items()}
    if any(not run.gradients.empty or not run.metrics.empty for run in runs.values()):
        path = draw.plot_experiment(runs, metric, figures.path(f"experiment-{experiment.name}"),
                                     experiment.title)
        blocks.append(figures.block(
            path, f"{experiment.title}: depth profiles and training curves",
            "Top: depth profile at the first (dashed) and last (solid) epoch; below: loss and "
            "accuracy, train solid, validation dashed."))
    names = list(experiment.labels)
    blocks.append(_result_table(names, summaries, experiment.labels))
    found = findings.experiment_findings(experiment.labels,
                                    {n: study.runs[n] for n in names}, summaries)
    blocks.append(p("Finding: " + " ".join(found)))
    return blocks, found


def _versions(study: StudyData) -> list[str]:
    seen: dict[str, set[str]] = {}
    for run in study.runs.values():
        for key, value in (run.config.get("versions") or {}).items():
            seen.setdefault(str(key), set()).add(str(value))
    lines = [f"{key} {', '.join(sorted(values))}" for key, values in sorted(seen.items())]
    for library in REPORT_LIBRARIES:
        try:
            lines.append(f"{library} {metadata.version(library)} (analysis)")
        except metadata.PackageNotFoundError:
            continue
    return lines


# ---------------------------------------------------------------------------- entry point
def write_report(
    study_dir: str | Path,
    *,
    metric: str = "weight_grad_norm",
    subset_layers: list[str] | None = None,
    target_acc: float = DEFAULT_TARGET_ACC,
) -> dict[str, Path]:
    """Write the figures (PNG), the Markdown and the HTML report into `study_dir`; return their
    paths.

    Keys of the result: "md" and "html" for the two reports, and each figure's path relative to
    `study_dir` ("figures/<name>.png"). `subset_layers` picks the layers of the per-model subset
    plot (the first, middle and last conv layers by default); `target_acc` is the validation
    accuracy whose first epoch the tables report. A diverged, failed or still-running run is
    reported as such and never stops the report.
    """
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    _, compared, _ = _comparison(study)
    featured = [name for name in compared if name in study.runs][:MAX_FEATURED_RUNS]
    _check_inputs(study, metric, target_acc, subset_layers, featured)
    summaries = {name: summarize_run(run, metric, target_acc=target_acc)
                 .with_outcome(state_text(run)) for name, run in study.runs.items()}
    figures = _Figures(study_dir)

    step3: list[Block] = []
    if len(compared) > len(featured):
        step3.append(p(f"Figures for the first {len(featured)} of the {len(compared)} compared "
                       "runs."))
    for name in featured:
        step3 += _run_figure_blocks(figures, name, study.runs[name], summaries[name], metric,
                                    subset_layers)
    step4 = _comparison_blocks(figures, study, summaries, metric)
    step5: list[Block] = []
    experiment_findings: list[str] = []
    for experiment in _experiments(study):
        blocks, found = _experiment_blocks(figures, study, experiment, summaries, metric)
        step5 += blocks
        if found:
            experiment_findings.append(f"{experiment.title}: {' '.join(found)}")

    answer = [p(s) for s in answers.answer_sentences(study, summaries, featured)]
    if any(s.first.ratio is not None for s in summaries.values()):
        path = draw.plot_ratio_overview(summaries, figures.path("all-runs-ratios"), metric)
        answer.append(figures.block(path, "first-to-last ratio of every run",
                                    "Every run's first-to-last ratio at its first (hollow) and "
                                    "last (filled) epoch; shaded: the vanishing and exploding "
                                    "bands."))
    sections = {
        "method": method_blocks(study, metric, target_acc),
        "overview": overview_blocks(study),
        "setup": setup_blocks(study),
        "step3": step3 or [p("No run to draw.")],
        "step4": step4,
        "step5": step5 or [p("The study defines no further experiments.")],
        "answer": answer,
        "why_vanish": [*WHY_VANISH,
                       *(p(s) for s in answers.chain_rule_sentences(study, summaries))],
        "theory": theory_blocks(study),
        "why_residual": [*WHY_RESIDUAL,
                         *(p(s) for s in answers.residual_sentences(study, summaries))],
        "batch_norm": [*WHAT_BATCH_NORM_DOES,
                       *(p(s) for s in answers.batch_norm_sentences(study, summaries))],
        "experiments": [bullets(experiment_findings)] if experiment_findings
        else [p("The study defines no further experiments.")],
        "references": [bullets(list(REFERENCES))],
        "versions": [bullets(_versions(study))],
    }
    context = {
        "title": study.title,
        "description": str(study.spec.get("description") or ""),
        "study_name": study.name,
        "preset": str(study.spec.get("preset") or ""),
        "sections": sections,
        "html_name": REPORT_HTML,
    }
    html_env, markdown_env = environments()
    written = {"md": study_dir / REPORT_MD, "html": study_dir / REPORT_HTML}
    write_text_atomic(written["md"], markdown_env.get_template("report.md.j2").render(context))
    write_text_atomic(written["html"], html_env.get_template("report.html.j2").render(context))
    return {**written, **figures.written}
