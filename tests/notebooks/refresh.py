"""Re-execute example notebooks in place, the way they are stored: outputs, nothing else.

    .venv/bin/python tests/notebooks/refresh.py                      # every notebooks/*.ipynb
    .venv/bin/python tests/notebooks/refresh.py notebooks/quickstart.ipynb

Each notebook runs top to bottom in a fresh kernel of this environment (cwd: its folder) and
is saved with its outputs but without execution timestamps or widget state, so diffs show
only what changed. Widget outputs keep their text form only: without the widgets' state, a
stored view would render as "model not found" in JupyterLab, while the text (one line per
upload) reads well everywhere, GitHub included; running the notebook brings the live widgets
back. A cell that raises stops the refresh and leaves the file untouched.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

__all__ = ["refresh"]


def refresh(path: Path) -> float:
    """Execute ``path`` and save it; returns the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    took = time.monotonic() - started
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    nbformat.write(nb, path)
    return took


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"{path}: executed in {refresh(path):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
