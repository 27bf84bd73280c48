"""The integrations are optional: `import gradprobe` never imports them, a missing extra says
which pip command installs it. Run in subprocesses so this test's own imports cannot hide one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from checkout import checkout_env


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=checkout_env(), timeout=120, check=False)


def test_import_gradprobe_imports_no_framework():
    result = run_python(
        "import sys, gradprobe, gradprobe.probe, gradprobe.integrations\n"
        "gradprobe.GradientProbe\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'lightning', 'pytorch_lightning', 'transformers', 'accelerate', 'nbclient'}))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("blocked", "module", "extra"),
    [("lightning", "lightning", "lightning"), ("transformers", "huggingface", "hf")],
)
def test_missing_extra_names_the_pip_command(blocked: str, module: str, extra: str):
    # A None entry in sys.modules makes `import blocked` raise ImportError, as if not installed.
    result = run_python(
        f"import sys; sys.modules[{blocked!r}] = None\n"
        f"import gradprobe.integrations.{module}"
    )
    assert result.returncode != 0
    assert f'pip install "gradprobe[{extra}]"' in result.stderr, result.stderr
