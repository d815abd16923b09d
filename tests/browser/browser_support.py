"""Helpers of the browser tests (a uniquely named module: every test dir has a conftest)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["ARTIFACTS", "write_notebook"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def write_notebook(path: Path, cells: list[str], kernel: str | None = None) -> None:
    """A notebook of code cells, for the default kernel or the kernelspec named ``kernel``."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": src,
                "id": f"c{i}",
            }
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3" if kernel is None else kernel,
                "language": "python",
                "name": kernel or "python3",
            }
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))
