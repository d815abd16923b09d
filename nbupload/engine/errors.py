"""The engine's exceptions; they are defined once, in :mod:`nbupload.errors`."""

from __future__ import annotations

from ..errors import (
    Interrupted,
    Stalled,
    StepFailed,
    UploadCancelled,
    UploadError,
    UploadFailed,
    UploadPaused,
)

__all__ = [
    "Interrupted",
    "Stalled",
    "StepFailed",
    "UploadCancelled",
    "UploadError",
    "UploadFailed",
    "UploadPaused",
]
