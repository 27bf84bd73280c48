"""`write_report`: a study directory (or one run directory) in; figures, report.md, report.html
and analysis.json out. Load once, analyse once, answer each question, render."""

from __future__ import annotations

from pathlib import Path

from gradprobe.analysis import study as analyse
from gradprobe.analysis.analysis_file import write_analysis
from gradprobe.analysis.document import Context, Figures
from gradprobe.analysis.load import load_study
from gradprobe.analysis.questions import build_sections
from gradprobe.analysis.render import render_report
from gradprobe.analysis.summary import DEFAULT_TARGET_ACC
from gradprobe.record import report_lock


def write_report(study_dir: str | Path, *, metric: str = "weight_grad_norm",
                 subset_layers: list[str] | None = None,
                 target_acc: float = DEFAULT_TARGET_ACC) -> dict[str, Path]:
    """Write the figures (PNG), report.md, report.html and analysis.json into `study_dir`.

    Returns "md", "html" and "analysis" paths and each figure's path relative to `study_dir`
    ("figures/<name>.png"). A diverged, failed, still-running or record-less run is reported as
    such and never stops the report. `subset_layers` are the layers Step 3's subset figure
    draws (default: the first, middle and last conv layer). `target_acc` is the accuracy
    `RunAnalysis` counts epochs to.
    """
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    analysis = analyse.build(study, metric, target_acc)
    context = Context(analysis, Figures(study_dir), subset_layers)
    dataset = next((str(run.section("data").get("dataset")) for run in study.runs.values()
                    if run.section("data")), "")
    with report_lock(study_dir):  # one writer at a time; a killed one's temporaries go first
        sections = build_sections(context, dataset)
        written = render_report(study, sections, study_dir)
        analysis_path = write_analysis(analysis, study_dir)
    return {**written, "analysis": analysis_path, **context.figures.written}
