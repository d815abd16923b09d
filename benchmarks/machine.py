"""The machine a run happened on, printed with every result so figures can be compared."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["describe_machine", "load_average", "machine_line"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _curl_version() -> str | None:
    curl = shutil.which("curl")
    if not curl:
        return None
    try:
        out = subprocess.run(
            [curl, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.split("\n", 1)[0].split(" (")[0] if out else ""
    return first.removeprefix("curl ").strip() or None


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing or broken peer has no version
        return None


def describe_machine() -> dict[str, Any]:
    """CPU model, core count, memory, Python, kernel and the peers' versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _mem_total(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "executable": sys.executable,
        "versions": {
            "nbupload": _version("nbupload"),
            "curl": _curl_version(),
            "httpx": _version("httpx"),
            "requests": _version("requests"),
            "requests-toolbelt": _version("requests-toolbelt"),
        },
    }


def machine_line(info: dict[str, Any]) -> str:
    mem = info.get("memory_bytes")
    mem_text = f", {mem / 2**30:.0f} GiB RAM" if mem else ""
    return f"{info['cpu']}, {info['cores']} cores{mem_text}, {info['python']}, {info['kernel']}"
