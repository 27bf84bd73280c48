"""Callbacks that put a `GradientProbe` into other frameworks' training loops.

Each integration is its own module and optional extra, imported only when asked for, so
`import gradprobe` never imports Lightning or transformers:

    from gradprobe.integrations.lightning import GradProbeCallback            # gradprobe[lightning]
    from gradprobe.integrations.huggingface import GradProbeTrainerCallback   # gradprobe[hf]
"""
