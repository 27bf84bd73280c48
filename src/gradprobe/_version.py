"""The package version. pyproject.toml declares it once; this reads it from the install."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gradprobe")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
