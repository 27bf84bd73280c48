"""Stream a probe's history to one Parquet file on disk, so memory stays flat on long runs.

Layout while the probe streams to `history.parquet`: every flush writes its rows as one complete
Parquet file, `history.parquet.parts/part-000001.parquet`, ... (each written atomically: a
temporary file renamed into place). Finishing (detaching the probe, or `finish()`) copies the
parts in order into `history.parquet` through one `pyarrow.parquet.ParquetWriter`, one row group
per part, renames it into place, and removes the parts folder.

Why parts and not one open ParquetWriter: a Parquet file is readable only once its footer is
written, at close, so a crash mid-run would leave nothing readable. Here a crash leaves the
`.parts` folder, every part in it a complete Parquet file up to the last finished flush:
`pandas.read_parquet("history.parquet.parts")` reads them all (`read_streamed` does the same,
in step order).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow as pa

from gradprobe.errors import InputError
from gradprobe.record import GRADIENT_COLUMNS, GradCol
from gradprobe.util.atomic import atomic_path

PARTS_SUFFIX = ".parts"  # history.parquet.parts/: the flushed parts of an unfinished stream
SCHEMA = pa.schema([
    (GradCol.step, pa.int64()), (GradCol.epoch, pa.int64()), (GradCol.layer, pa.string()),
    (GradCol.depth, pa.int64()), (GradCol.kind, pa.string()), (GradCol.metric, pa.string()),
    (GradCol.value, pa.float64()),
])


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + PARTS_SUFFIX)


def _pq() -> ModuleType:
    """pyarrow.parquet, imported on first use: `import gradprobe.probe` stays light."""
    import pyarrow.parquet

    return pyarrow.parquet


def _table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame.loc[:, list(GRADIENT_COLUMNS)], schema=SCHEMA,
                                preserve_index=False)


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))  # zero-padded: name order is flush order


def read_streamed(path: str | Path) -> pd.DataFrame:
    """The tidy frame of a finished stream (`path`) or of an unfinished one (its `.parts`
    folder, e.g. after a crash): every completed flush, in step order."""
    path = Path(path)
    folder = parts_dir(path)
    if folder.is_dir():
        tables = [_pq().read_table(part, schema=SCHEMA) for part in _parts(folder)]
        return (pa.concat_tables(tables) if tables else SCHEMA.empty_table()).to_pandas()
    if path.is_file():
        return _pq().read_table(path, schema=SCHEMA).to_pandas()
    raise InputError(f"No streamed history at {str(path)!r} (nor {folder.name}/ beside it). "
                     "Pass the path given to `GradientProbe(stream_to=...)`.")


class ParquetStream:
    """Appends tidy frames as parts of `path`; `finish()` joins them into `path` itself."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.parts = parts_dir(self.path)
        if self.parts.exists():
            raise InputError(
                f"{self.parts} exists: the parts of an unfinished stream (a crashed run?). Read "
                "it with gradprobe.probe.stream.read_streamed or pandas.read_parquet, then move or "
                "delete it, or stream to another path."
            )
        self.parts.mkdir(parents=True)
        self._count = 0
        self.finished = False

    def write(self, frame: pd.DataFrame) -> None:
        """Write `frame` as the next part (a complete Parquet file, renamed into place)."""
        if self.finished:
            raise RuntimeError(f"the stream to {self.path} is finished; start a new one")
        self._count += 1
        with atomic_path(self.parts / f"part-{self._count:06d}.parquet") as tmp:
            _pq().write_table(_table(frame), tmp)

    def read(self) -> pd.DataFrame:
        """Everything written so far, in step order."""
        return read_streamed(self.path)

    def finish(self) -> Path:
        """Join the parts into `path` (one row group per part, memory bounded by one part),
        rename it into place and remove the parts folder. Idempotent."""
        if self.finished:
            return self.path
        with atomic_path(self.path) as tmp, _pq().ParquetWriter(tmp, SCHEMA) as writer:
            for part in _parts(self.parts):
                writer.write_table(_pq().read_table(part, schema=SCHEMA))
        shutil.rmtree(self.parts)
        self.finished = True
        return self.path


class StreamFiles:
    """A probe's history on disk: the stream being written, if any, and the files finished
    before it (oldest first)."""

    def __init__(self) -> None:
        self.current: ParquetStream | None = None
        self.finished: list[Path] = []

    def start(self, path: str | Path) -> ParquetStream:
        path = Path(path)
        if path in self.finished or (self.current is not None and self.current.path == path):
            raise InputError(f"this probe already streamed to {path}; pick a new file")
        self.current = ParquetStream(path)
        return self.current

    def refuse_while_streaming(self, what: str) -> None:
        """A checkpoint of the history would miss the rows on disk: refuse while streaming."""
        if self.current is not None:
            raise InputError(
                f"{what}() of a probe streaming to {self.current.path} is not supported: call "
                "probe.finish_stream() first and keep its file beside the checkpoint"
            )

    def finish(self) -> Path | None:
        """Finish the current stream; its path (None when there is none)."""
        if self.current is None:
            return None
        stream, self.current = self.current, None
        self.finished.append(stream.finish())
        return stream.path

    def read(self) -> list[pd.DataFrame]:
        """Every row on disk, oldest first, as tidy frames."""
        frames = [read_streamed(path) for path in self.finished]
        return frames + ([self.current.read()] if self.current is not None else [])
