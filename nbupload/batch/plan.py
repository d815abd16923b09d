"""Skip-unchanged, the planning step: what to do with each file of the window a batch takes.

:class:`Planner` answers ``skip``, ``upload`` or ``append`` from a recorded size for each file,
from what an earlier run of the same batch recorded (:class:`~nbupload.batch.manifest.Manifest`)
and then, for the files it names, from the server's own answer (the checks
:mod:`nbupload.batch.manifest` describes), a few files at once. Any doubt (an error, a changed
answer) means ``upload``: a skip must never lose a file. Apart from :class:`~nbupload.batch.core.Batch`
so that the feeder reads as feeding, and these HTTP checks as what they are.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx

from ..batchpaths import BatchItem
from ..engine import Engine
from ..protocols import uploader, wcs
from ..protocols.multipart import BytesSource
from ..protocols.ranges import RangeSet
from .manifest import local_etag

__all__ = ["Plan", "Planner"]


class Plan:
    """What to do with one file: ``skip``, ``upload``, or ``append`` from ``position``."""

    __slots__ = ("action", "item", "position")

    def __init__(self, item: BatchItem, action: str, position: int = 0) -> None:
        self.item = item
        self.action = action
        self.position = position


class Planner:
    """Plans a batch's files (thread-safe); holds one HTTP client for its checks until :meth:`close`."""

    def __init__(
        self,
        engine: Engine,
        url: str,
        protocol: str,
        submit: Mapping[str, Any],
        records: Mapping[str, Mapping[str, Any]],
        *,
        prefix: str,
        check_remote: bool,
    ) -> None:
        self.engine = engine
        self.url = url
        self.protocol = protocol
        self.prefix = prefix
        self._submit = submit
        self._records = records
        self._check_remote = check_remote
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._wcs_creds: Any = None

    def plan(self, items: list[BatchItem]) -> list[Plan]:
        """One plan per file, in order: the manifest first, then the server for those it
        names (a few at once)."""
        plans = [self._local(item) for item in items]
        need = [p for p in plans if p.action == "check"]
        if need:
            with ThreadPoolExecutor(max_workers=min(4, len(need))) as pool:
                list(pool.map(self._remote, need))
        return plans

    def _local(self, item: BatchItem) -> Plan:
        rec = self._records.get(item.name)
        if rec is None:
            return Plan(item, "upload")
        same = rec.get("size") == item.size and rec.get("mtime_ns") == item.mtime_ns
        grew = (
            self.protocol == "wcs-append"
            and isinstance(rec.get("size"), int)
            and item.size > rec["size"]
            and rec.get("etag")
        )
        if same:
            return Plan(item, "check" if self._check_remote else "skip")
        if grew:
            return Plan(item, "check", int(rec["size"]))
        return Plan(item, "upload")

    def _remote(self, plan: Plan) -> None:
        """Turn a ``check`` plan into ``skip``, ``append`` or ``upload`` (in a pool thread)."""
        item = plan.item
        rec = self._records[item.name]
        try:
            if self.protocol == "wcs-append":
                if plan.position:  # grew: the recorded part must be unchanged here and there
                    if local_etag(item.path, plan.position) != rec["etag"]:
                        plan.action = "upload"
                    elif not self._check_remote or self._wcs_holds(item, rec):
                        plan.action = "append"
                    else:
                        plan.action = "upload"
                    return
                plan.action = "skip" if self._wcs_holds(item, rec) else "upload"
            else:
                plan.action = "skip" if self._uploader_holds(item, rec) else "upload"
        except (httpx.HTTPError, OSError, ValueError):
            plan.action = "upload"

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=30.0, follow_redirects=False, verify=self.engine.config.verify
                )
            return self._http

    def _wcs_holds(self, item: BatchItem, rec: Mapping[str, Any]) -> bool:
        """An empty append at the recorded size answers the object's hash (B3)."""
        if self._wcs_creds is None:
            from ..engine.credentials import resolve_wcs_credentials

            cfg = self.engine.config
            self._wcs_creds = resolve_wcs_credentials(
                token=self._submit.get("token"),
                access_key=self._submit.get("access_key"),
                secret_key=self._submit.get("secret_key"),
                scope=self._submit.get("scope"),
                defaults=(cfg.token, cfg.access_key, cfg.secret_key),
                ttl=cfg.token_ttl,
            )
        size = int(rec["size"])
        body = wcs.prepare_append(
            self._wcs_creds.current(), BytesSource(b""), 0, 0, key=self.prefix + item.name
        )
        base = self.url.rstrip("/")
        r = self._client().post(base + wcs.append_path(size), content=body.read_all(), headers=body.headers)
        answer = wcs.process_append_answer(r.status_code, r.headers.multi_items(), r.content)
        return bool(answer.ok and answer.hash and answer.hash == rec.get("etag"))

    def _uploader_holds(self, item: BatchItem, rec: Mapping[str, Any]) -> bool:
        """The reference server's stat route (size and etag of the stored file) when it has
        one; else the session's query must list the whole file as held."""
        client = self._client()
        stored = str(rec.get("stored") or self.prefix + item.name)
        origin = str(httpx.URL(self.url).copy_with(path="/", query=None, fragment=None)).rstrip("/")
        r = client.get(origin + "/files/" + quote(stored, safe="/") + "?stat")
        if r.headers.get("x-nbupload-read"):  # the route exists: its answer is the truth
            try:
                info = r.json() if r.status_code == 200 else None
            except ValueError:
                info = None
            if not isinstance(info, dict) or info.get("size") != item.size or not info.get("hash"):
                return False
            return bool(info["hash"] == local_etag(item.path))
        boundary = rec.get("boundary")
        if not isinstance(boundary, str) or not boundary:
            return False
        headers = dict(self._submit.get("headers") or {})
        qheaders, body = uploader.prepare_query(boundary)
        r = client.post(self.url, content=body, headers={**headers, **qheaders})
        answer = uploader.process_query_answer(r.status_code, r.content, boundary)
        field = str(rec.get("field") or "file")
        return answer.resumable and answer.ranges_for(field) == RangeSet([(0, item.size)])

    def close(self) -> None:
        """Close the HTTP client of the checks (a later plan opens another)."""
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()
