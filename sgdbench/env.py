"""The environment a grid ran in (written to env.json and into every run row)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any


def git_sha(path: Path) -> str | None:
    """HEAD of the git checkout containing ``path`` (with ``-dirty``), or None."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def collect(grid_dir: Path) -> dict[str, Any]:
    """Versions, hardware and thread settings."""
    from importlib.metadata import version

    import numpy
    import pyarrow
    import torch

    import sgdbench

    cuda = torch.cuda.is_available()
    return {
        "sgdbench_version": sgdbench.__version__,
        "schema_version": sgdbench.SCHEMA_VERSION,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy_version": numpy.__version__,
        "pandas_version": version("pandas"),  # not imported: a run does not need it
        "pyarrow_version": pyarrow.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "git_sha": git_sha(grid_dir),
    }
