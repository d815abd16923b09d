"""Batches: many files (folders, globs, lists) uploaded as one thing the user steers and sees.

``nbupload.upload_many(["results/", "logs/*.txt"], url)`` (or ``nbupload.upload([...], url)``)
returns a :class:`Batch` at once; the snapshot (files done/total, bytes, rate, ETA, failures
with their server codes) says how many files were skipped as already uploaded and unchanged.
A journaled batch survives a restart and resumes as one. The package's modules:

- :mod:`~nbupload.batch.start`: :func:`upload_many`, checking what was asked and building the batch;
- :mod:`~nbupload.batch.core`: the :class:`Batch` (the feeder, steering, snapshot, journal);
- :mod:`~nbupload.batch.manifest`: skip-unchanged (what an earlier run uploaded, local etags);
- :mod:`~nbupload.batch.plan`: skip-unchanged, the checks: skip, upload or append each file;
- :mod:`~nbupload.batch.snapshot`: :class:`BatchSnapshot`, :class:`BatchFailure`, :class:`BatchError`;
- :mod:`~nbupload.batch.registry`: live batches by id, and which batch a task belongs to;
- :mod:`~nbupload.batch.unfinished`: the journal's unfinished batches: list, forget, resume.

Every public name is importable from ``nbupload.batch`` itself.
"""

from __future__ import annotations

from .core import Batch
from .manifest import Manifest
from .registry import batches, get_batch, owner_of
from .snapshot import BatchError, BatchFailure, BatchSnapshot
from .start import upload_many
from .unfinished import UnfinishedBatch, forget_batch, resumable_alone, resume_batch, unfinished_batches

__all__ = [
    "Batch",
    "BatchError",
    "BatchFailure",
    "BatchSnapshot",
    "Manifest",
    "UnfinishedBatch",
    "batches",
    "forget_batch",
    "get_batch",
    "owner_of",
    "resumable_alone",
    "resume_batch",
    "unfinished_batches",
    "upload_many",
]
