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


# ---------------------------------------------------------------------------- full disks
def test_a_full_disk_is_one_error_naming_the_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from a Python write, or torch's errno-less RuntimeError when the disk is found
    full, both become NoSpaceError (an OSError) with the path, the space free and needed; any
    other RuntimeError passes through. The temporary is removed either way."""
    import errno

    from gradprobe.util import atomic

    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"x" * 3000)  # the version a rewrite replaces: about as large
    with pytest.raises(atomic.NoSpaceError, match=r"holding .* while writing checkpoint\.pt\. "
                       r"Fix: free at least 2\.9 KiB there") as caught, \
            atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"y" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    import pickle

    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)
    monkeypatch.setattr(atomic, "free_bytes", lambda directory: 4096)
    with pytest.raises(atomic.NoSpaceError, match=r"\(4\.0 KiB free\)"), \
            atomic.atomic_path(tmp_path / "new.pt"):
        raise RuntimeError("basic_ios::clear: iostream error")
    monkeypatch.setattr(atomic, "free_bytes", lambda directory: 10 << 30)
    with pytest.raises(RuntimeError, match="a bug"), atomic.atomic_path(tmp_path / "new.pt"):
        raise RuntimeError("a bug")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert target.read_bytes() == b"x" * 3000  # never replaced by half a file


# ---------------------------------------------------------------------------- walks
def test_walk_keeps_os_walks_order_on_an_ordinary_tree(tmp_path: Path) -> None:
    """The iterative walk lists files exactly as the os.walk it replaced did (the order
    decides split indices and the cache key), and sets nothing aside."""
    from gradprobe.util.walk import walk_files

    for relative in ("b/2.png", "b/1.png", "a/x/3.png", "a/x/y/4.png", "a/0.png", "c.png",
                     "a/z/5.png", "a/.hidden/6.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    expected = []
    for directory, subdirectories, filenames in os.walk(tmp_path, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        expected += [Path(directory) / f for f in sorted(filenames) if not f.startswith(".")]
    walk = walk_files(tmp_path, lambda name: not name.startswith("."), set(), set())
    assert walk.files == expected
    assert walk.set_aside == [] and walk.repeated_dirs == [] and walk.repeated_files == []


def test_display_path_shows_undecodable_bytes() -> None:
    from gradprobe.util.paths import display_path

    assert display_path(os.fsdecode(b"/data/bad\xff.png")) == "/data/bad\\xff.png"
    assert display_path("/data/caf\u00e9.png") == "/data/caf\u00e9.png"


# ---------------------------------------------------------------------------- YAML
def test_bounded_yaml_keeps_ordinary_documents_and_merge_keys() -> None:
    from gradprobe.util.safe_yaml import load_yaml

    text = "base: &b {lr: 0.1, epochs: 2}\nrun:\n  <<: *b\n  lr: 0.2\nlist: [1, [2, [3]]]\n"
    assert load_yaml(text, "spec") == {"base": {"lr": 0.1, "epochs": 2},
                                      "run": {"lr": 0.2, "epochs": 2}, "list": [1, [2, [3]]]}
    with pytest.raises(InputError, match=r"the key 'lr' is written twice .* \(lines 1 and 2\)"):
        load_yaml("lr: 1\nlr: 2\n", "spec")


def test_an_output_folder_on_a_full_disk_is_a_full_disk_not_bad_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from gradprobe.util.atomic import NoSpaceError
    from gradprobe.util.paths import prepare_output_dir

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "touch", full)
    with pytest.raises(NoSpaceError, match=r"no space left on the device holding .*out"):
        prepare_output_dir(tmp_path / "out")
