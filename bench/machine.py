"""A one-line description of the machine a benchmark ran on (CPU model, cores, GPU)."""

from __future__ import annotations

import os
import platform


def describe_machine() -> str:
    """Return e.g. ``AMD EPYC, 2 cores, no GPU, Linux 6.1``."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {cores} cores, {gpu}, {platform.system()} {platform.release().split('-')[0]}"
