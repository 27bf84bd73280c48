"""Names that become paths cannot leave their parent folder; killed writers leave nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradprobe.errors import InputError
from gradprobe.util.paths import child_path, safe_name


@pytest.mark.parametrize("name", ["vgg_deep", "bn.norm=batch,seed=1", "depth=8,residual=true",
                                  "lr=1e-3", "a+b@2"])
def test_ordinary_run_names_are_safe(name: str) -> None:
    assert safe_name(name) == name


@pytest.mark.parametrize("name", ["../../escaped_run", "/some/dir", "a/b", "a\\b", "..", ".",
                                  ".hidden", "two words", "x..y", "", "tab\tname", "nul\0"])
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match=r"run name .*(cannot be used as a folder|non-empty)"):
        safe_name(name, "run name")


def test_overlong_name_is_refused() -> None:
    with pytest.raises(InputError, match="limit is 200"):
        safe_name("a" * 201)


def test_child_path_refuses_a_link_out_of_the_parent(tmp_path: Path) -> None:
    parent, outside = tmp_path / "runs", tmp_path / "outside"
    parent.mkdir()
    outside.mkdir()
    os.symlink(outside, parent / "linked")
    assert child_path(parent, "fresh") == parent / "fresh"
    with pytest.raises(InputError, match="outside"):
        child_path(parent, "linked")


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    from gradprobe.util.atomic import atomic_path, remove_stale_temporaries

    with pytest.raises(RuntimeError, match="killed"), atomic_path(tmp_path / "checkpoint.pt"):
        raise RuntimeError("killed")  # an exception cleans up; a SIGKILL would not
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"x" * 100)
    keep = [tmp_path / "checkpoint.pt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for path in keep:
        path.write_text("kept")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and all(path.exists() for path in keep)
