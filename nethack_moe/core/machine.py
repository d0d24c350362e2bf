"""What machine a figure was measured on (CPU, cores, torch, GPU)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from typing import Any

import torch


def machine_info() -> dict[str, Any]:
    """CPU model, cores, GPU, versions and date, for every benchmark record."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import nle

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            load = f.read().split()[0]
    except OSError:
        load = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_1min": load,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "nle": getattr(nle, "__version__", "1.3.0"),
        "host": platform.node(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
