"""The schema of `analysis.json`, the report's analysis as data (written beside report.md).

A notebook or another tool reads the study's conclusions from here without parsing prose:

    {
      "schema": 1,
      "study": "vanishing-gradients",
      "metric": "weight_grad_norm",          # the report's gradient metric
      "chance": {"classes": 10, "val_images": 270, "accuracy": 0.1,
                 "interval": [0.067, 0.137], "loss": 2.3026},
      "verdict_thresholds": {"vanishing_below": 0.1, "exploding_above": 10.0},
      "configurations": [
        {"name": "vgg_deep", "runs": ["vgg_deep,seed=0", ...], "seeds": [0, 1, 2],
         "states": ["completed", ...],
         "at_chance": true, "at_chance_runs": 3,  # runs at chance (rule: see "chance")
         "best_val_acc": ESTIMATE, "final_val_acc": ESTIMATE, "test_acc": ESTIMATE,
         "ratios": {"weight_grad_norm": {"step0": ESTIMATE, "first": ESTIMATE,
                                          "last": ESTIMATE},
                    "output_grad_norm": {...}},
         "verdicts": {"step0": "vanishing", "first": "healthy", "last": "vanishing"},
         "verdict": "healthy at step 0 and epoch 1, vanishing by epoch 7",
         "events": [EVENT, ...],             # its runs' events, step order per run
         "diagnoses": [{"run", "cause", "text", "events": [EVENT, ...]}, ...]}
      ],
      "events": [EVENT, ...]                 # every detected event, [] when none was detected
    }

ESTIMATE is {"centre", "low", "high", "n", "values", "geometric"}: the mean over seeds (geometric
for ratios) and its 95% t-interval (null with one seed), as `gradprobe.analysis.replicates`
defines them. A ratio is the epoch-mean norm of the fitted layer nearest the input over that of
the one nearest the output; "step0" is the first recorded step (the initialisation). EVENT is
{"run", "kind", "step", "epoch", "value", "threshold", "detail"}, as
`gradprobe.analysis.events` detects them (kinds and thresholds in its docstring); a diagnosis's
"cause" is one of those kinds or "healthy". Non-finite numbers are null.
"""

from __future__ import annotations

ANALYSIS_SCHEMA = 1  # bump when a key changes meaning
