"""The report's summaries and figures straight from a probe's in-memory frame, and
`gradprobe report` on a single `gradprobe train` directory: both go through the same code as
the study report, so the numbers must match the run directory's exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from gradprobe.analysis import (
    load_run,
    plot_depth_profile,
    plot_heatmap,
    plot_layer_norms,
    plot_layer_subset,
    summarize_frame,
    summarize_run,
)
from gradprobe.cli import main
from gradprobe.errors import InputError
from gradprobe.probe import GradientProbe
from gradprobe.record import GRADIENTS_FILE, REPORT_HTML, Col


def probe_frame() -> tuple[GradientProbe, pd.DataFrame]:
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(8, 8), nn.Tanh())],
                          nn.Linear(8, 2))
    probe = GradientProbe(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    data = torch.randn(12, 5, 8, generator=torch.Generator().manual_seed(2))
    with probe:
        for step in range(12):
            optimizer.zero_grad()
            model(data[step]).pow(2).sum().backward()
            probe.record(step, epoch=1 + step // 4)
            optimizer.step()
    return probe, probe.to_frame()


def test_summary_from_probe_matches_a_naive_float64_computation():
    probe, frame = probe_frame()
    analysis = probe.summary()
    assert analysis == summarize_frame(frame)
    norms = frame.loc[frame["metric"] == "weight_grad_norm"]
    by_epoch = norms.groupby(["epoch", "depth"])["value"].mean().unstack()  # (epoch, depth)
    first, last = by_epoch.columns.min(), by_epoch.columns.max()
    for flow, epoch in ((analysis.first, 1), (analysis.last, 3)):
        assert flow.epoch == epoch
        assert flow.ratio == pytest.approx(by_epoch.at[epoch, first] / by_epoch.at[epoch, last],
                                           rel=1e-12)
        slope = np.polyfit(by_epoch.columns.to_numpy(float),
                           np.log10(by_epoch.loc[epoch].to_numpy(float)), 1)[0]
        assert flow.decay_per_layer == pytest.approx(10 ** -slope, rel=1e-9)
    assert (analysis.first_layer, analysis.last_layer) == ("0", "8")
    assert analysis.fit_kind == "linear" and analysis.first.layers == 5


def test_figures_from_a_frame_are_figures_or_files(tmp_path: Path):
    _, frame = probe_frame()
    figures = [plot_layer_norms(frame, name="mlp"), plot_layer_subset(frame),
               plot_heatmap(frame), plot_depth_profile({"a": frame, "b": frame})]
    assert all(isinstance(figure, Figure) for figure in figures)
    assert len(figures[1].axes[0].get_legend().get_texts()) == 3  # first, middle, last layer
    assert "mlp" in figures[0].texts[0].get_text()  # the suptitle names the frame
    path = plot_heatmap(frame, "weight_grad_norm", tmp_path / "heat.png")
    assert path == tmp_path / "heat.png" and path.stat().st_size > 0


def test_frame_without_the_tidy_columns_is_refused():
    with pytest.raises(InputError, match=r"lacks the columns \['depth'"):
        summarize_frame(pd.DataFrame({"step": [0], "epoch": [1], "layer": ["a"]}))


@pytest.mark.slow
def test_report_on_a_single_train_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    run_dir = tmp_path / "run"
    argv = ["train", "--model", "plain", "--depth", "8", "--width", "0.25", "--dataset",
            "synthetic", "--image-size", "16", "--images-per-class", "8", "--epochs", "2",
            "--batch-size", "8", "--out", str(run_dir), "--threads", "1"]
    assert main(argv) == 0
    assert (run_dir / GRADIENTS_FILE).is_file()
    capsys.readouterr()
    assert main(["report", str(run_dir)]) == 0
    assert str(run_dir / REPORT_HTML) in capsys.readouterr().out
    html = (run_dir / REPORT_HTML).read_text()
    run = load_run(run_dir)
    analysis = summarize_run(run)
    assert analysis.first.ratio is not None and math.isfinite(analysis.first.ratio)
    assert run.name in html and f"{analysis.first.ratio:.3g}" in html
    # the in-memory path gives the run directory's numbers
    from_frame = summarize_frame(run.gradients, metrics=run.metrics, name=run.name)
    assert from_frame.first == analysis.first and from_frame.last == analysis.last
    assert from_frame.best_val_acc == analysis.best_val_acc == run.metrics[Col.val_acc].max()
