"""`gradprobe scan`: gradient flow at initialisation across architectures and depths, measured
(`run_scan`) and predicted (`run_theory`, `gradprobe.theory`).

    from gradprobe.scan import ScanConfig, run_scan
    result = run_scan(ScanConfig(depths=(8, 16)), "runs/scan")
    result.summary  # measured and predicted first-to-last ratio and per-layer factor

In scan.parquet, `depth` is a layer's index (0 nearest the input), as in gradients.parquet;
`network_depth` is the network's number of conv layers.
"""

from gradprobe.scan.config import ARCHITECTURE_OPTIONS, SCAN_MODEL, ScanConfig, TheoryConfig
from gradprobe.scan.measure import SCAN_METRICS, measure
from gradprobe.scan.run import ScanResult, predict_networks, run_scan, summarise
from gradprobe.scan.theory_profile import TheoryResult, run_theory

__all__ = [
    "ARCHITECTURE_OPTIONS",
    "SCAN_METRICS",
    "SCAN_MODEL",
    "ScanConfig",
    "ScanResult",
    "TheoryConfig",
    "TheoryResult",
    "measure",
    "predict_networks",
    "run_scan",
    "run_theory",
    "summarise",
]
