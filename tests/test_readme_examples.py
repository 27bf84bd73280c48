"""The README's and docs' examples run as written, so they cannot rot.

Each test takes the fenced code blocks under one README heading and runs them in a fresh
process: Python blocks from a temporary directory (they write under `runs/` there), shell blocks
from the repository root, skipping `pip install` lines (`make test` installs every extra).
`test_every_code_block_is_run_or_checked` makes sure no block of README.md or docs/*.md is left
out: each Python block is run by a test here, each shell line is run or parsed by the CLI's own
parser, each YAML spec is validated, and every `gradprobe ...` written inline parses too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradprobe import cli
from gradprobe.cli import build_parser, parse_args

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
ANY_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOCUMENTS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
# The README sections whose Python blocks a test below runs.
PYTHON_SECTIONS = ("Install as a library", "Analysis straight from a probe",
                   "Long runs: stream the history to disk", "With Lightning",
                   "With the Hugging Face Trainer", "What a study writes")


def blocks_under(heading: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README section titled `heading`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text,
                      re.MULTILINE | re.DOTALL)
    assert match is not None, f"README.md has no section '## {heading}'"
    return FENCE.findall(match.group(1))


def environment() -> dict[str, str]:
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path for path in paths if path),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HF_HUB_OFFLINE": "1",  # the examples must not download anything
    }


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_python_blocks(heading: str, tmp_path: Path) -> str:
    blocks = [code for language, code in blocks_under(heading) if language == "python"]
    assert blocks, f"no python block under '## {heading}'"
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    return run([sys.executable, str(script)], cwd=tmp_path)


@pytest.mark.slow
def test_lightning_example(tmp_path):
    printed = run_python_blocks("With Lightning", tmp_path)
    assert "net.0" in printed and "net.4" in printed
    assert (tmp_path / "runs" / "lightning" / "gradients.parquet").is_file()
    logged = (tmp_path / "runs" / "lightning").rglob("metrics.csv")
    assert any("gradprobe/weight_grad_norm/net.0" in path.read_text() for path in logged)


@pytest.mark.slow
def test_hugging_face_example(tmp_path):
    printed = run_python_blocks("With the Hugging Face Trainer", tmp_path)
    assert "bert.encoder.layer.0.attention.self.query" in printed
    assert (tmp_path / "runs" / "hf" / "gradients.parquet").is_file()


@pytest.mark.slow
def test_analysis_from_a_probe_example(tmp_path):
    printed = run_python_blocks("Analysis straight from a probe", tmp_path)
    assert "first-to-last ratio at epoch 1:" in printed
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    assert (tmp_path / "profile.png").stat().st_size > 0


@pytest.mark.slow
def test_streaming_example(tmp_path):
    printed = run_python_blocks("Long runs: stream the history to disk", tmp_path)
    assert printed.strip() == "2500 steps on disk"
    assert not (tmp_path / "history.parquet.parts").exists()


def test_notebook_example():
    # The command names the notebook tests/test_notebook.py executes (once, there: ~25 s).
    blocks = [code for language, code in blocks_under("In a notebook") if language == "bash"]
    assert blocks, "no bash block under '## In a notebook'"
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [command for command in commands if command and not command.startswith("pip ")]
    assert commands == ["jupyter execute examples/vanishing_gradients.ipynb"]
    assert (ROOT / "examples" / "vanishing_gradients.ipynb").is_file()


@pytest.mark.slow
def test_diagnosis_example(tmp_path):
    """The diagnosis example, on a smoke-size vgg_deep trained where the example looks."""
    run_dir = tmp_path / "runs" / "diagnose" / "runs" / "vgg_deep"
    assert cli.main(["train", "--model", "vgg_deep", "--preset", "smoke", "--quiet",
                     "--out", str(run_dir)]) == 0
    printed = run_python_blocks("What a study writes", tmp_path)
    assert printed.strip()  # a diagnosis: a cause and what happened, or "healthy"


@pytest.mark.slow
def test_library_example(tmp_path):
    run_python_blocks("Install as a library", tmp_path)


@pytest.mark.slow
def test_theory_example_commands_run_and_report(tmp_path):
    """The "Theory beside measurement" commands, for one init and activation."""
    blocks = [code for language, code in
              blocks_under("`gradprobe scan`: gradient flow at initialisation")
              if language == "bash"]
    assert len(blocks) == 1
    out = tmp_path / "theory"
    script = blocks[0].replace("runs/theory", str(out))
    run(["bash", "-c", f"set -e; init=default; act=relu; {script}"], cwd=ROOT)
    run_dir = out / "w0.125" / "init=default,activation=relu"
    assert (run_dir / "report.md").stat().st_size > 0
    config = json.loads((run_dir / "config.json").read_text())["run"]
    # the setup the README's table was measured with: synthetic images, plain SGD
    assert (config["data"]["dataset"], config["train"]["momentum"]) == ("synthetic", 0.0)


# -- every block of README.md and docs/*.md is run or checked -----------------------------------


def all_blocks() -> list[tuple[Path, str, str, str]]:
    """(document, heading, language, code) of every fenced block; heading: the nearest above."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for match in ANY_FENCE.finditer(text):
            headings = re.findall(r"^(#+ .*)$", text[:match.start()], re.MULTILINE)
            found.append((document, headings[-1] if headings else "", match.group(1),
                          match.group(2)))
    return found


def shell_commands(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    commands = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [command for command in commands if command and not command.startswith("#")]


def check_gradprobe_command(command: str, variables: dict[str, str] | None = None) -> None:
    """Parse `gradprobe ...` with the CLI's own parser: every flag exists, every choice is
    valid. A usage line (`[--jobs N]`, `smoke|quick|full`) only needs its flags to exist."""
    for name, value in (variables or {}).items():
        command = command.replace(f"${name}", value)
    words = shlex.split(command.replace("\\|", "|"))
    assert words[0] == "gradprobe", command
    if any(mark in command for mark in ("[", "|", "COMMAND", "...")):
        subcommand = words[1]
        sub = cli._subparsers(build_parser())[subcommand]
        known = {flag for action in sub._actions for flag in action.option_strings}
        flags = set(re.findall(r"(--[a-z][a-z-]*)", command))
        assert flags <= known, f"{command}: no such flag {sorted(flags - known)}"
        return
    try:
        parse_args(build_parser(), words[1:])
    except SystemExit as error:
        pytest.fail(f"the documented command `{command}` does not parse (exit {error.code})")


def check_shell_line(command: str) -> None:
    """A documented shell command exists as written (the long ones are run by other tests)."""
    words = shlex.split(command)
    if words[:2] == ["pip", "install"]:
        return  # `make test` installs every extra
    if words[0] == "make":
        for target in words[1:]:
            dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True,
                                 text=True, check=False, timeout=60)
            assert dry.returncode == 0, f"make {target}: {dry.stderr}"
        return
    if words[0] == "gradprobe":
        check_gradprobe_command(command, {"init": "default", "act": "relu"})
        return
    if words[0] == "jupyter":  # tests/test_notebook.py executes it
        assert (ROOT / words[-1]).is_file(), command
        return
    env = dict(word.split("=", 1) for word in words if "=" in word and word.index("=") > 0
               and word.split("=", 1)[0].isupper())
    program = [word for word in words if word not in
               {f"{key}={value}" for key, value in env.items()}]
    if program[0] == "python":  # a script: it exists, and its flags parse (its --help runs)
        script = ROOT / program[1]
        assert script.is_file(), command
        source = script.read_text(encoding="utf-8")
        for flag in re.findall(r"(--[a-z][a-z-]*)", command):
            assert f'"{flag}"' in source, f"{command}: {script.name} has no {flag}"
        return
    pytest.fail(f"a documented shell command nobody checks: {command}")


def test_every_code_block_is_run_or_checked(tmp_path):
    from gradprobe.study import load_spec, plan_study

    python_sections = set()
    for document, heading, language, code in all_blocks():
        where = f"{document.name}, {heading}"
        if language == "python":
            python_sections.add(heading.lstrip("# "))
        elif language == "bash":
            for command in shell_commands(code):
                check_shell_line(command)
        elif language == "yaml":  # a study spec: valid, and it plans
            spec = load_spec(yaml.safe_load(code))
            assert plan_study(spec, preset="smoke").runs, where
        else:  # a listing (directory trees): no command hides in it
            assert language == "", f"{where}: a {language} block nobody checks"
            for line in code.splitlines():
                assert not line.lstrip().startswith(("gradprobe ", "$ ", "python ")), where
    assert python_sections == set(PYTHON_SECTIONS)  # each run by a test above


def test_every_inline_gradprobe_command_parses():
    commands = [match for document in DOCUMENTS
                for match in re.findall(r"`(gradprobe [^`]+)`", document.read_text("utf-8"))]
    assert len(commands) > 10
    subcommands = set(cli._subparsers(build_parser()))
    for command in commands:
        words = command.split()
        if words[1] == "COMMAND":
            continue
        if len(words) == 2:  # the command's name, not an invocation
            assert words[1] in subcommands, command
            continue
        check_gradprobe_command(" ".join(words))
