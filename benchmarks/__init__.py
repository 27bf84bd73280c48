"""gradprobe's benchmark suite: `python -m benchmarks` (see benchmarks/suite.py).

Every figure is a ratio against a baseline measured in the same process, interleaved in rounds
(benchmarks/timing.py), or a wall time against its target. Not part of the installed package:
run it from the repository root.
"""
