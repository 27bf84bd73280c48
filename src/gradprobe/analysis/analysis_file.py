"""analysis.json: the study analysis as data (schema: `gradprobe.record.analysis`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from gradprobe.analysis.configurations import Configuration
from gradprobe.analysis.replicates import Estimate
from gradprobe.analysis.study import StudyAnalysis
from gradprobe.analysis.summary import VERDICT_THRESHOLDS
from gradprobe.record import ANALYSIS_FILE
from gradprobe.record.analysis import ANALYSIS_SCHEMA
from gradprobe.util.atomic import write_json_atomic


def _estimate(value: Estimate | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"centre": value.centre, "low": value.low, "high": value.high, "n": value.n,
            "values": list(value.values), "geometric": value.log_scale}


def _configuration(analysis: StudyAnalysis, config: Configuration) -> dict[str, Any]:
    return {
        "name": config.name, "runs": list(config.runs), "seeds": list(config.seeds),
        "states": [state.value for state in config.states],
        "at_chance": config.at_chance, "at_chance_runs": config.at_chance_runs,
        "best_val_acc": _estimate(config.best_val_acc),
        "final_val_acc": _estimate(config.final_val_acc), "test_acc": _estimate(config.test_acc),
        "ratios": {metric: {point: _estimate(value) for point, value in points.items()}
                   for metric, points in config.ratios.items()},
        "verdicts": config.verdicts, "verdict": config.verdict_text(),
        "events": [event.as_dict() for event in analysis.events_of(config)],
        "diagnoses": [analysis.diagnoses[run].as_dict() for run in config.runs
                      if run in analysis.diagnoses],
    }


def analysis_data(analysis: StudyAnalysis) -> dict[str, Any]:
    chance = analysis.chance
    return {
        "schema": ANALYSIS_SCHEMA, "study": analysis.study.name, "metric": analysis.metric,
        "chance": None if chance is None else {
            "classes": chance.classes, "val_images": chance.val_images,
            "accuracy": chance.accuracy, "interval": [chance.low, chance.high],
            "loss": chance.loss},
        "verdict_thresholds": asdict(VERDICT_THRESHOLDS),
        "configurations": [_configuration(analysis, c) for c in analysis.configurations],
        "events": [event.as_dict() for event in analysis.events],
    }


def write_analysis(analysis: StudyAnalysis, study_dir: Path) -> Path:
    path = study_dir / ANALYSIS_FILE
    write_json_atomic(path, analysis_data(analysis))
    return path
