"""Starting a batch: :func:`upload_many` checks what the caller asked and expands the paths;
:func:`make_batch` gives the :class:`~nbupload.batch.core.Batch` its journal and manifest.

Names follow :func:`~nbupload.batchpaths.expand_paths`: relative names such as
``run1/metrics.csv`` are kept, as the uploader ``filename`` or under the WCS key ``prefix``.
:func:`make_batch` is shared with :func:`~nbupload.batch.unfinished.resume_batch`, so a batch
started afresh and one resumed from the journal are built alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..batchpaths import BatchItem, expand_paths
from ..engine import Engine
from ..engine.journal import BatchJournal
from .core import Batch
from .manifest import Manifest

__all__ = ["make_batch", "upload_many"]


def upload_many(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    url: str,
    *,
    protocol: str = "uploader",
    prefix: str = "",
    hidden: bool = False,
    skip_unchanged: bool = True,
    check_remote: bool = True,
    window: int | None = None,
    wait: bool = False,
    engine: Engine | None = None,
    **options: Any,
) -> Batch:
    """Upload files, folders (recursive) and globs as one :class:`Batch`.

    ``paths``: one or several paths; names follow :func:`~nbupload.batchpaths.expand_paths`
    (relative paths kept: ``run1/metrics.csv``), with ``prefix`` in front (a folder on the
    uploader server, a key prefix for WCS). ``hidden`` includes dot files found by walking.
    ``skip_unchanged`` skips files uploaded by an earlier run of the same batch and unchanged
    since (size, mtime and, with ``check_remote``, the server's own answer: see
    :mod:`nbupload.batch.manifest`).
    ``options`` are :func:`nbupload.upload`'s (``protocol``, ``chunk_size``, ``fields``,
    ``headers``, ``token``/``access_key``/``secret_key``/``scope``, ``mime``, ``name``).
    With ``wait=True`` returns once settled and raises :class:`BatchError` on failures.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r} must be a relative folder without '..'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    for bad in ("filename", "key", "position", "source"):
        if bad in options:
            raise TypeError(
                f"upload_many() sets {bad} per file; use prefix= for a common folder or key prefix"
            )
    items = expand_paths(list(paths), hidden=hidden)
    if not items:
        raise FileNotFoundError("nothing to upload: the folders given hold no files")
    if engine is None:
        from ..api import get_engine

        engine = get_engine()
    submit = {"protocol": protocol, **{k: v for k, v in options.items() if v is not None}}
    if protocol == "wcs-append":
        from ..engine.credentials import resolve_wcs_credentials

        cfg = engine.config
        resolve_wcs_credentials(  # fail now, not once per file, when credentials are missing
            token=options.get("token"),
            access_key=options.get("access_key"),
            secret_key=options.get("secret_key"),
            scope=options.get("scope"),
            defaults=(cfg.token, cfg.access_key, cfg.secret_key),
        )
    batch = make_batch(
        engine,
        items,
        str(url),
        submit,
        prefix=prefix,
        skip_unchanged=skip_unchanged,
        check_remote=check_remote,
        window=window,
        record_options={**submit, "hidden": hidden, "skip_unchanged": skip_unchanged},
    )
    if wait:
        batch.wait(raise_on_error=True)
    return batch


def make_batch(
    engine: Engine,
    items: list[BatchItem],
    url: str,
    submit: Mapping[str, Any],
    *,
    prefix: str,
    skip_unchanged: bool,
    check_remote: bool,
    window: int | None,
    record_options: Mapping[str, Any],
    batch_id: str | None = None,
    done: Iterable[str] = (),
) -> Batch:
    manifest = journal = None
    if engine.config.journal:
        journal = BatchJournal(engine.config.tasks_dir)
        if skip_unchanged:
            identity = {
                "protocol": str(submit.get("protocol", "uploader")),
                "url": url.split("?", maxsplit=1)[0],
                "prefix": prefix,
                "scope": str(submit.get("scope") or ""),
                "field": str(submit.get("name") or "file"),
            }
            manifest = Manifest(engine.config.tasks_dir / "batches", identity)
    return Batch(
        engine,
        items,
        url,
        submit,
        prefix=prefix,
        manifest=manifest,
        check_remote=check_remote,
        window=window,
        batch_id=batch_id,
        done=done,
        journal=journal,
        record_options=record_options,
    )
