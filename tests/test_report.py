"""The report of a hand-built study: it renders, says what the numbers say, escapes user text."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fakes import resnet_layers, vgg_layers, write_run, write_study
from gradprobe import record
from gradprobe.analysis import load_study, summarize_run, write_report
from gradprobe.analysis.format import fmt_pct, fmt_ratio
from gradprobe.analysis.render import markdown_escape
from gradprobe.analysis.tables import dataset_facts
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
    figures = [key for key in written if key.startswith("figures/")]
    # 3 per compared model, depth profile, curves, one experiment, the all-runs overview
    assert len(figures) == 3 * 3 + 2 + 1 + 1, figures
    for key, path in written.items():
        assert path.stat().st_size > 0
        if key.endswith(".png"):
            assert path == root / key
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            assert f"({key})" in (root / "report.md").read_text(encoding="utf-8")
    assert not list((root / "figures").glob("*.tmp"))  # atomic writes leave no debris


def test_report_states_the_measured_numbers(study: tuple[Path, dict[str, Path]]) -> None:
    text = (study[0] / "report.md").read_text(encoding="utf-8")
    # vgg_deep halves per layer over 5 conv layers: ratio 1/16, 0.5 per layer, -3.01 dB
    assert ("vgg\\_deep at epoch 1, features.0 (depth 0)'s weight-gradient L2 norm is 0.0625× "
            "that of features.8 (depth 4)") in text
    assert "by a factor of 0.5 per layer going back towards the input (-3.01 dB per layer, " \
           "R² = 1.000); verdict from the first-to-last ratio: vanishing." in text
    assert "halving is -3.01 dB per layer" in text  # the dB definition is stated
    assert "vanishing if the ratio is below 0.1, exploding if it is above 10" in text
    # one seed: the configuration table gives the value and n=1, no interval
    assert "| vgg16 | 1 | 1 completed | 70.0% (n=1) |" in text
    assert "0.512 (n=1), epoch 1" in text  # 0.8 ** 3
    for heading in ("Steps 1–2", "Step 3", "Step 4", "Step 5", "Step 6", "(a)", "(b)", "(c)",
                    "(d)", "(e)", "(f) References"):
        assert heading in text
    for reference in ("Simonyan", "Glorot", "Ioffe", "Veit", "Balduzzi", "Yang", "Santurkar",
                      "Identity Mappings", "Deep Residual Learning", "PyTorch", "Matplotlib",
                      "pandas"):
        assert reference in text


def test_report_compares_twins(study: tuple[Path, dict[str, Path]]) -> None:
    text = (study[0] / "report.md").read_text(encoding="utf-8")
    assert ("first-epoch first-to-last ratio plain against residual: twin.plain 8 (n=1) against "
            "twin.residual 1 (n=1).") in text
    # one seed a side: the direction is counted, never called beyond seed-to-seed variation
    assert ("The residual run's ratio is closer to 1 (more even gradient flow) in 1 of 1 pair, "
            "beyond seed-to-seed variation in 0 (Welch's test on the absolute log10 ratio), "
            "the predicted direction, but not beyond seed-to-seed variation.") in text
    assert ("first-epoch first-to-last ratio without against batch-normalised: vgg\\_deep "
            "0.0625 (n=1) against vgg\\_bn 0.656 (n=1).") in text
    # one seed a side: the accuracy difference is stated but not called
    assert ("Best validation accuracy: twin.residual 70.0% (n=1) against twin.plain 70.0% (n=1); "
            "the difference (+0.0 points) cannot be separated from noise") in text
    # Yang et al.: plain nets with batch norm, gradients at initialisation
    assert ("(ratio above 1) in plain batch-normalised twin.plain (8); not in vgg\\_bn (0.656). "
            "That growth towards the input is what Yang et al. (2019) predict") in text
    assert "Among the study's other 5 runs, 1 shows vanishing gradients: " \
           "act.activation=sigmoid (0.0156)." in text


def test_report_says_diverged_and_failed_plainly(study: tuple[Path, dict[str, Path]]) -> None:
    root, _ = study
    for name in ("report.md", "report.html"):
        text = (root / name).read_text(encoding="utf-8")
        assert "diverged at step 6 (loss became NaN)" in text
        assert "failed:" in text and "out of memory" in text
    markdown = (root / "report.md").read_text(encoding="utf-8")
    # the experiment's finding still compares both variants, diverged one included
    assert re.search(r"activation=sigmoid \(act\.activation=sigmoid\) diverged at step 6", markdown)
    assert re.search(r"0\.729 \(n=1\) \(healthy\) with activation=relu and 0\.0156 \(n=1\) "
                     r"\(vanishing\) with activation=sigmoid", markdown)


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
    write_report(tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert ("No: the data do not show vanishing gradients in the compared model. Every "
            "first-to-last ratio at the first epoch is at or above 0.1: even (1)") in text
    assert "ReLU nets with He initialisation (even)" in text


def test_report_of_failed_runs_only_renders(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "dead", files=("config", "status"), state="failed",
              message="boom")
    write_study(tmp_path, ["dead", "ghost"])
    written = write_report(tmp_path)
    text = written["md"].read_text(encoding="utf-8")
    assert "cannot say whether gradients vanish" in text
    assert "failed: boom" in text and "never started" in text
    assert not [key for key in written if key.startswith("figures/")]


def test_report_of_a_run_still_training(tmp_path: Path) -> None:
    # mid-run: config and the first gradient records, no status, metrics or summary yet
    write_run(tmp_path / "runs", "young", files=("config", "gradients"))
    write_study(tmp_path, ["young"])
    text = write_report(tmp_path)["md"].read_text(encoding="utf-8")
    assert "still running: results are partial" in text
    assert "young at epoch 1, features.0 (depth 0)'s weight-gradient L2 norm is 0.0625×" in text


def test_subset_layers_and_bad_input(tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "one", layers=vgg_layers(6))
    write_study(tmp_path, ["one"])
    written = write_report(tmp_path, subset_layers=["features.2", "features.6"],
                           metric="output_grad_norm")
    text = written["md"].read_text(encoding="utf-8")
    assert "one: features.2, features.6." in text
    assert "output-gradient L2 norm" in text
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
    config["data_info"] = {"kind": "folder", "classes": ["b", "a"], "counts": {"train": 4}}
    record.write_config(run_dir, config)
    write_study(tmp_path, ["listed"])
    facts = dataset_facts(load_study(tmp_path))
    assert (facts["class_columns"], facts["class_rows"]) == (["class"], [["b"], ["a"]])
    assert facts["counts"] == [{"split": "train", "images": "4"}]


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
    assert len(figures) == 3 + 2 + 1  # per-run trio, depth profile and curves, ratio overview
    assert all(written[key].read_bytes()[:8] == PNG_SIGNATURE for key in figures)
    text = written["md"].read_text(encoding="utf-8")
    assert (f"{summary.first_layer} (depth {summary.first_depth})'s weight-gradient L2 norm is "
            f"{fmt_ratio(summary.first.ratio)}× that of {summary.last_layer}") in text
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
    assert "with depth=8 and" in text and "with depth=16." in text
