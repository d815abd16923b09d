"""The upload panel: pure formatting (:mod:`.format`), the UI pump (:mod:`.pump`) and the
ipywidgets panel (:mod:`.widgets`, imported on demand so consoles never load ipywidgets)."""

from .format import segments, summary_text, text_line
from .pump import UIPump

__all__ = ["UIPump", "segments", "summary_text", "text_line"]
