"""Shared test settings.

Tests train tiny models, for which one torch thread is fastest and, on a loaded 2-core machine,
far more predictable than two (oversubscribed threads slowed tiny models ~50x in our runs).
Subprocesses the tests start inherit the setting through the environment.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
