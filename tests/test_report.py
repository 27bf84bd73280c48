"""The report of a hand-built study: it renders, says what the numbers say, escapes user text."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from fakes import resnet_layers, vgg_layers, write_run, write_study
from gradprobe import record
from gradprobe.analysis import load_study, summarize_run, write_report
from gradprobe.analysis.format import fmt_pct, fmt_ratio
from gradprobe.analysis.render import markdown_escape
from gradprobe.errors import InputError

XSS = "<img src=x onerror=alert(1)>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A comparison of three models, a two-variant experiment with a diverged variant, a failed
    run, a batch-norm twin and a plain/residual pair; every gradient profile is geometric."""
    root = tmp_path_factory.mktemp("study")
    runs = root / "runs"
    write_run(runs, "vgg_deep", layers=vgg_layers(5), classes=("cats", XSS))  # halves per layer
    write_run(runs, "vgg16", layers=vgg_layers(4), norm_of=lambda d, k, e, s, m: 0.8 ** (3 - d))
    write_run(runs, "resnet18", layers=resnet_layers(), norm_of=lambda d, k, e, s, m: 1.0,
              model={"name": "resnet18", "norm": "batch"},
              model_info={"family": "resnet", "residual": True, "norm": "batch"})
    write_run(runs, "act.activation=relu", layers=vgg_layers(4),
              norm_of=lambda d, k, e, s, m: 0.9 ** (3 - d))
    write_run(runs, "act.activation=sigmoid", layers=vgg_layers(4), model={"activation": "sigmoid"},
              norm_of=lambda d, k, e, s, m: 0.25 ** (3 - d), state="diverged", diverged_step=6,
              message="diverged at step 6 (epoch 2): loss became nan")  # the trainer's words
    write_run(runs, "broken", files=("config", "status"), state="failed",
              message="<script>alert(1)</script> out of memory")
    # vgg_deep's batch-normalised twin, and a plain net with its residual twin
    write_run(runs, "vgg_bn", layers=vgg_layers(5), norm_of=lambda d, k, e, s, m: 0.9 ** (4 - d),
              model={"norm": "batch"}, model_info={"norm": "batch"})
    twin = {"depth": 8, "norm": "batch"}
    write_run(runs, "twin.plain", layers=vgg_layers(4),
              norm_of=lambda d, k, e, s, m: 2.0 ** (3 - d), model={"name": "plain", **twin},
              model_info={"family": "plain", "norm": "batch"})
    write_run(runs, "twin.residual", layers=vgg_layers(4), norm_of=lambda d, k, e, s, m: 1.0,
              model={"name": "resnet", **twin},
              model_info={"family": "resnet", "norm": "batch", "residual": True})
    experiment = {"name": "act", "title": "Activation functions",
                  "question": "Do saturating activations make gradients vanish?",
                  "axes": {"activation": ["relu", "sigmoid"]},
                  "runs": ["act.activation=relu", "act.activation=sigmoid"]}
    write_study(root, ["vgg_deep", "vgg16", "resnet18", "act.activation=relu",
                       "act.activation=sigmoid", "broken", "vgg_bn", "twin.plain", "twin.residual"],
                comparison=["vgg_deep", "vgg16", "resnet18"], experiments=[experiment],
                title="Hand-built study")
    return root, write_report(root)


def test_report_files_and_figures_exist(study: tuple[Path, dict[str, Path]]) -> None:
    root, written = study
    assert (written["md"], written["html"]) == (root / "report.md", root / "report.html")
    assert written["analysis"] == root / record.ANALYSIS_FILE
    figures = [key for key in written if key.startswith("figures/")]
    # headline, output-gradient overview, one all-layers and one subset per compared model,
    # depth profile, curves, one experiment, a heat map per compared model
    assert len(figures) == 2 + 3 + 3 + 2 + 1 + 3, figures
    for key, path in written.items():
        assert path.stat().st_size > 0
        if key.endswith(".png"):
            assert path == root / key
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            assert f"({key})" in (root / "report.md").read_text(encoding="utf-8")
    assert not list((root / "figures").glob("*.tmp"))  # atomic writes leave no debris


def test_report_sections_come_in_the_assignment_order(study: tuple[Path, dict[str, Path]]
                                                      ) -> None:
    text = (study[0] / "report.md").read_text(encoding="utf-8")
    headings = ["## Setup and results", "## Key findings", "## Step 3", "## Step 4",
                "## Step 5", "## Step 6", "### (a)", "### (b)", "### (c)", "### (d)", "### (e)",
                "### (f) References", "## Appendix"]
    positions = [text.index(heading) for heading in headings]
    assert positions == sorted(positions)
    for reference in ("Glorot", "Ioffe", "Veit", "Balduzzi", "Yang", "Santurkar",
                      "Identity Mappings", "Deep Residual Learning", "PyTorch", "Matplotlib",
                      "pandas"):
        assert reference in text


def test_report_states_the_measured_numbers(study: tuple[Path, dict[str, Path]]) -> None:
    text = (study[0] / "report.md").read_text(encoding="utf-8")
    # vgg_deep halves per layer over 5 conv layers: ratio 1/16 at every point, both metrics
    assert "| vgg\\_deep | 70.0% | 1 | 0.0625 / 0.0625 / 0.0625 | 0.0625 / 0.0625 / 0.0625 | " \
           "vanishing throughout |" in text
    assert "| vgg16 | 70.0% | 1 | 0.512 / 0.512 / 0.512 |" in text  # 0.8 ** 3


def test_user_strings_are_escaped(study: tuple[Path, dict[str, Path]]) -> None:
    html = (study[0] / "report.html").read_text(encoding="utf-8")
    assert XSS not in html
    assert "<tr><td>&lt;img src=x onerror=alert(1)&gt;</td><td>70</td><td>15</td>" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    markdown = (study[0] / "report.md").read_text(encoding="utf-8")
    assert XSS not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown
    assert markdown_escape("a_b|c*[d]") == r"a\_b\|c\*\[d\]"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href"):
                self.tags.append((tag, name, value or ""))


def test_html_is_self_contained(study: tuple[Path, dict[str, Path]]) -> None:
    parser = _Links()
    parser.feed((study[0] / "report.html").read_text(encoding="utf-8"))
    images = [value for tag, _, value in parser.tags if tag == "img"]
    figures = [key for key in study[1] if key.startswith("figures/")]
    assert len(images) == len(figures)
    assert all(value.startswith("data:image/png;base64,") for value in images)
    assert not [t for t in parser.tags if t[0] in ("script", "link")]
    assert all(value.startswith(("data:", "#")) for _, _, value in parser.tags)


def test_report_says_when_the_data_show_no_vanishing(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "even", norm_of=lambda d, k, e, s, m: 1.0)
    write_study(tmp_path, ["even"])
    text = write_report(tmp_path)["md"].read_text(encoding="utf-8")
    assert "**No: no configuration's first-to-last ratio falls below 0.1" in text


def test_report_of_failed_runs_only_renders(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "dead", files=("config", "status"), state="failed",
              message="boom")
    write_study(tmp_path, ["dead", "ghost"])
    written = write_report(tmp_path)
    text = written["md"].read_text(encoding="utf-8")
    assert "No run recorded usable gradients, so this study cannot say." in text
    assert "failed: boom" in text and "never started" in text


def test_report_of_a_run_still_training(tmp_path: Path) -> None:
    # mid-run: config and the first gradient records, no status, metrics or summary yet
    write_run(tmp_path / "runs", "young", files=("config", "gradients"))
    write_study(tmp_path, ["young"])
    text = write_report(tmp_path)["md"].read_text(encoding="utf-8")
    assert "still running: results are partial" in text
    assert "| young | n/a | 1 | 0.0625 / 0.0625 / 0.0625 |" in text


def test_subset_layers_and_bad_input(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "one", layers=vgg_layers(6))
    write_study(tmp_path, ["one"])
    written = write_report(tmp_path, subset_layers=["features.2", "features.6"],
                           metric="output_grad_norm")
    text = written["md"].read_text(encoding="utf-8")
    assert "one (seed 0): chosen layers (features.2, features.6)" in text
    assert "output-gradient L2 norm" in text
    assert "figures/one-subset.png" in written
    with pytest.raises(InputError, match="Unknown gradient metric"):
        write_report(tmp_path, metric="loss")
    with pytest.raises(InputError, match="weight_grad_rms"):
        write_report(tmp_path, metric="weight_grad_rms")  # valid name, never recorded
    with pytest.raises(InputError, match=r"features\.99"):
        write_report(tmp_path, subset_layers=["features.99"])
    with pytest.raises(InputError, match="target_acc"):
        write_report(tmp_path, target_acc=80)


def test_dataset_classes_from_either_record(tmp_path: Path) -> None:
    # the contract's plain `classes` list, without per-class counts, is shown too
    run_dir = write_run(tmp_path / "runs", "listed", classes=("b", "a"))
    config = record.read_run_file(run_dir / record.CONFIG_FILE)
    config["data_info"] = {"kind": "folder", "classes": ["bee", "ant"], "counts": {"train": 4}}
    record.write_config(run_dir, config)
    write_study(tmp_path, ["listed"])
    text = write_report(tmp_path)["md"].read_text(encoding="utf-8")
    assert "| class |\n| --- |\n| bee |\n| ant |" in text


def test_a_real_training_run_goes_through_the_analysis(tmp_path: Path) -> None:
    """End to end: a run directory `gradprobe.train` wrote -> load -> summary -> figures ->
    report, and the report states the numbers the analysis computed from those records."""
    from gradprobe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from gradprobe.train import train

    config = RunConfig(model=ModelConfig(name="plain_stack", depth=3, width=0.25),
                       data=DataConfig(image_size=16, images_per_class=12),
                       train=TrainConfig(epochs=2, batch_size=8))
    run_dir = train(config, tmp_path / "real").run_dir
    run = load_study(run_dir).runs["real"]
    assert run.problems == [] and run.state is record.RunState.COMPLETED
    summary = summarize_run(run)
    assert summary.first.ratio is not None and summary.first.layers == 3
    written = write_report(run_dir)
    figures = [key for key in written if key.startswith(f"{record.FIGURES_DIR}/")]
    # headline and output overview, all-layers and subset, depth profile and curves, heat map,
    # and a timeline only if the tiny run failed or surprised (it may sit at chance after 2
    # epochs)
    assert len([key for key in figures if not key.endswith("-timeline.png")]) == 2 + 2 + 2 + 1
    assert all(written[key].read_bytes()[:8] == PNG_SIGNATURE for key in figures)
    text = written["md"].read_text(encoding="utf-8")
    assert f"| {fmt_ratio(summary.ratio_first_step)} | {fmt_ratio(summary.first.ratio)} |" in text
    assert f"{fmt_pct(summary.test_acc)}" in text  # test accuracy from summary.json
    # "best" is defined once: the trainer's summary and the analysis agree
    assert record.read_run_file(run_dir / record.SUMMARY_FILE).best_val_acc == summary.best_val_acc


def test_experiment_labels_are_read_back_from_the_study_spec(tmp_path: Path) -> None:
    """The labels `gradprobe study` writes into the spec are the ones the report prints."""
    for name in ("depth.a", "depth.b"):
        write_run(tmp_path / "runs", name)
    experiment = {"name": "depth", "title": "Depth", "axes": {"depth": [8, 16]},
                  "runs": ["depth.a", "depth.b"],
                  "labels": {"depth.a": "depth=8", "depth.b": "depth=16"}}
    write_study(tmp_path, ["depth.a", "depth.b"], experiments=[experiment])
    text = write_report(tmp_path)["md"].read_text(encoding="utf-8")
    assert "| depth=8 | 1 |" in text and "| depth=16 | 1 |" in text


def test_report_says_diverged_and_failed_plainly(study: tuple[Path, dict[str, Path]]) -> None:
    root, _ = study
    for name in ("report.md", "report.html"):
        text = (root / name).read_text(encoding="utf-8")
        assert "diverged at step 6 (loss became NaN)" in text
        assert "failed:" in text and "out of memory" in text


def test_twins_come_from_the_registry(study: tuple[Path, dict[str, Path]]) -> None:
    from gradprobe.analysis.questions import batch_norm
    from gradprobe.analysis.study import build

    analysis = build(load_study(study[0]))
    assert [(a.name, b.name) for a, b in analysis.twins] == [("twin.plain", "twin.residual")]
    assert [(a.name, b.name) for a, b in batch_norm.twins(analysis)] == [("vgg_deep", "vgg_bn")]


def test_report_removes_a_killed_writers_temporaries_under_its_lock(tmp_path: Path) -> None:
    """`gradprobe report` (not only `study`) takes the report lock and clears what a killed
    report writer left: a 0-byte figure temporary and a half-written report."""
    write_run(tmp_path / "runs", "one", layers=vgg_layers(4))
    write_study(tmp_path, ["one"])
    stale = [tmp_path / record.FIGURES_DIR / ".overview.png.x1y2.tmp",
             tmp_path / ".report.html.abc.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    write_report(tmp_path)
    assert [path for path in stale if path.exists()] == []
    assert (tmp_path / record.REPORT_LOCK).exists()  # the lock file itself stays, empty
