"""The seeded fault campaign: real client and server processes, faults at random, figures.

Topology (loopback only)::

    engine (in this process, or `nbupload put`/`resume` children, or a Jupyter kernel)
      -> BurstFront (5xx bursts, with or without Retry-After;        tests/chaos/burst.py
                     answers reset at a random byte offset)
      -> FaultProxy (resets at random byte offsets, swallowed        tests/support/proxy.py
                     answers, stalls, slowness)
      -> the reference server, a child process (SIGKILLed and restarted on the same root)
         (or, with ``processes=2``, two child processes on that root, new connections to each in turn)

Each run uploads one file with one protocol, under one to three fault kinds drawn from the
seed, then checks: the stored file's sha256 equals the source's, nothing was appended twice
(a WCS object never outgrows its source), nothing was lost (every run that should finish
did), and it counts the file bytes the server received beyond the file's size (re-sent).
Scenario kinds check their own contract as well: the stall watchdog fired, exactly one of
two concurrent resumers won, a source modified mid-upload was reported and never stored
mixed. :func:`format_table` prints the figures docs/reliability.md quotes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_burst import Burst, BurstFront
from hostile_net import ServerProcess, http_request, raw_exchange

from tests.support.proxy import Fault, FaultProxy

__all__ = [
    "KINDS",
    "REPORTS",
    "Campaign",
    "RunResult",
    "RunSpec",
    "chaos_server",
    "format_table",
    "plan",
    "wcs_submit",
]

MiB = 1024 * 1024
ACCESS_KEY = "AKchaos"
SECRET_KEY = "chaos-secret-" + hashlib.sha256(b"chaos").hexdigest()[:16]
BUCKET = "chaos"
REPO = Path(__file__).resolve().parents[2]

NETWORK_KINDS = (
    "reset-up",
    "reset-down",
    "answer-swallowed",
    "5xx-burst",
    "5xx-burst-retry-after",
    "slow-response",
    "stall",
)
PROCESS_KINDS = ("server-sigkill", "client-sigkill", "kernel-restart", "two-resumers", "source-modified")
KINDS = NETWORK_KINDS + PROCESS_KINDS
#: Kinds that replace the in-process engine by other processes (at most one per run).
CLIENT_SCENARIOS = ("client-sigkill", "kernel-restart", "two-resumers")
PROTOCOLS = ("uploader", "wcs-append")
SIZES = (0, 1, 65_537, 300_000, 1 * MiB, 2_500_000, 4 * MiB + 3)
CHUNKS = (64 * 1024, 128 * 1024, 256 * 1024, 512 * 1024)
STALL_TIMEOUT = 1.0
#: bytes every request of ours sends before its body (request line and headers exceed this)
STALL_HEAD = 128
RUN_TIMEOUT = 90.0
#: The tables of the campaigns run in this session, printed at its end by conftest.
REPORTS: list[str] = []


@dataclass(frozen=True)
class RunSpec:
    index: int
    protocol: str
    size: int
    chunk: int
    workers: int
    kinds: tuple[str, ...]
    seed: int

    @property
    def streams(self) -> int:
        """Chunks in flight per task: 1 to 4 in turn over uploader runs (WCS appends are serial);
        derived from the index so the campaign's random draws stay what they were."""
        return 1 if self.protocol == "wcs-append" else 1 + self.index % 4


@dataclass
class RunResult:
    spec: RunSpec
    outcome: str  # ok | detected | corrupted | lost | duplicated | failed-contract
    injected: Counter = field(default_factory=Counter)
    resent: int | None = None
    wire: int | None = None  # request bytes (heads, forms, file) beyond the file size
    seconds: float = 0.0
    detail: str = ""


def plan(seed: int, runs: int, *, cover_all: bool = True) -> list[RunSpec]:
    """The runs of a campaign. With ``cover_all`` the first runs feature every kind once
    (so even a short campaign exercises each), the rest are drawn at random."""
    rng = random.Random(seed)
    specs = []
    for i in range(runs):
        protocol = PROTOCOLS[i % 2] if i < len(KINDS) * 2 else rng.choice(PROTOCOLS)
        if cover_all and i < len(KINDS):
            kinds = [KINDS[i]]
            if rng.random() < 0.5:
                kinds.append(rng.choice(NETWORK_KINDS))
        else:
            kinds = rng.sample((*NETWORK_KINDS, "server-sigkill"), rng.randint(1, 3))
            if rng.random() < 0.1:  # a failure by design: kept rarer than the faults recovered from
                kinds.append("source-modified")
            if rng.random() < 0.12:
                kinds.append(rng.choice(CLIENT_SCENARIOS))
        needs_time = any(k in PROCESS_KINDS for k in kinds)
        size = rng.choice([s for s in SIZES if s >= MiB]) if needs_time else rng.choice(SIZES)
        chunk = rng.choice(CHUNKS)
        workers = 1 if protocol == "wcs-append" else rng.randint(1, 4)
        specs.append(
            RunSpec(i, protocol, size, chunk, workers, tuple(dict.fromkeys(kinds)), rng.randrange(2**32))
        )
    return specs


def chaos_server(root: Path, **options: Any) -> ServerProcess:
    """The reference server process (not yet started) that the campaign and the chaos tests run:
    it knows the campaign's WCS key pair and logs warnings only; ``options`` go to
    :class:`ServerProcess` (``log_path``, ``body_idle_timeout``, ...)."""
    return ServerProcess(root, credentials={ACCESS_KEY: SECRET_KEY}, log_level="warning", **options)


def wcs_submit(key: str) -> dict[str, Any]:
    """``Engine.submit`` keyword arguments for a WCS append of ``key`` into the campaign's
    bucket with its key pair."""
    return dict(protocol="wcs-append", access_key=ACCESS_KEY, secret_key=SECRET_KEY, scope=BUCKET, key=key)


def sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def _write_source(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(rng.randbytes(n))
            left -= n


class Campaign:
    """One server, one proxy chain, one journal home; :meth:`run` executes a :class:`RunSpec`."""

    def __init__(
        self, workdir: Path, log: Callable[[str], None] = lambda s: None, processes: int = 1
    ) -> None:
        """``processes`` > 1: that many server processes on one root, each new connection to
        the next in turn, so the chunks of a session (and the appends of an object, across
        reconnections) land on several processes; a server SIGKILL kills one of them."""
        self.workdir = workdir
        self.log = log
        self.root = workdir / "root"
        self.home = workdir / "home"
        self.sources = workdir / "sources"
        for d in (self.root, self.home, self.sources):
            d.mkdir(parents=True, exist_ok=True)
        self.servers = [
            chaos_server(self.root, log_path=workdir / f"server-{n}.log") for n in range(processes)
        ]
        for server in self.servers:
            server.start()
        self.server = self.servers[0]
        self.proxy = FaultProxy(*self.server.address)
        if processes > 1:
            self.proxy.upstreams = [s.address for s in self.servers]
        self.front = BurstFront(("127.0.0.1", self.proxy.port))
        self._stats_carry: Counter = Counter()  # counters of server incarnations killed
        self._requests_carry = [0] * processes  # requests answered by killed incarnations, per process
        self.children: list[subprocess.Popen] = []
        self.results: list[RunResult] = []
        self.kills = 0
        self._firing = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.front.close()
        self.proxy.close()
        for server in self.servers:
            server.stop()

    def env(self, protocol: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBUPLOAD_")}
        env["NBUPLOAD_HOME"] = str(self.home)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        if protocol == "wcs-append":
            env["NBUPLOAD_ACCESS_KEY"], env["NBUPLOAD_SECRET_KEY"] = ACCESS_KEY, SECRET_KEY
        return env

    def _stats_now(self) -> Counter:
        """The counters of the live incarnations, summed over the server processes."""
        return sum((self._stats_of(server) for server in self.servers), Counter())

    def requests_by_process(self) -> list[int]:
        """Upload requests each server process answered, over all its incarnations (both protocols)."""
        now = [self._stats_of(server) for server in self.servers]
        return [
            int(c["uploader.requests"] + c["wcs.requests"]) + carry
            for c, carry in zip(now, self._requests_carry, strict=True)
        ]

    @staticmethod
    def _stats_of(server: ServerProcess) -> Counter:
        answer = raw_exchange(
            server.address, http_request("GET", "/_nbupload/stats", [], b"", content_length=None)
        )
        if answer is None or answer.status != 200:
            return Counter()
        obj = json.loads(answer.body)
        return Counter(
            {
                f"{proto}.{name}": value
                for proto, counters in obj.items()
                if isinstance(counters, dict)
                for name, value in counters.items()
                if isinstance(value, (int, float))
            }
        )

    def received(self, protocol: str) -> int:
        """File bytes received by every incarnation of the server, for ``protocol``."""
        key = "uploader.bytes" if protocol == "uploader" else "wcs.bytes"
        return int(self._stats_carry[key] + self._stats_now()[key])

    def kill_server(self, rng: random.Random) -> None:
        """SIGKILL a server process (one of them, drawn, when there are several) and restart
        it on the same root; the others keep serving meanwhile."""
        victim = self.servers[rng.randrange(len(self.servers))] if len(self.servers) > 1 else self.server
        last = self._stats_of(victim)  # bytes of the last instant before the kill are not counted
        self._stats_carry += last
        self._requests_carry[self.servers.index(victim)] += int(
            last["uploader.requests"] + last["wcs.requests"]
        )
        victim.kill()
        self.kills += 1
        time.sleep(rng.uniform(0.0, 0.4))
        victim.restart()
        self.proxy.target = self.server.address
        if len(self.servers) > 1:
            self.proxy.upstreams = [s.address for s in self.servers]

    def _drain_proxy_queue(self) -> None:
        self.proxy.clear()  # faults queued for connections that never came
        self.front.clear()
        self.proxy.default = Fault()

    def _quiesce(self) -> None:
        """End the run's leftover connections (a stalled one would deliver its held bytes
        seconds later, counted against the next run) and wait for the server's counters to
        settle, so the re-sent bytes of a run are its own."""
        for owner in (self.front, self.proxy):
            owner.close_connections()
        last, end = None, time.monotonic() + 5
        while time.monotonic() < end:
            now = self._stats_now()
            if now == last:
                break
            last = now
            time.sleep(0.1)

    def _counters(self) -> Counter:
        c = self.proxy.counters
        used = list(c.faults_used)
        slow = sum(1 for f in used if 0 < f.delay < STALL_TIMEOUT)
        held = sum(1 for f in used if f.delay >= STALL_TIMEOUT)  # answers held back past the watchdog
        return Counter(
            {
                "reset-up": c.cuts,
                "reset-down": self.front.answers_cut,
                "answer-swallowed": c.swallowed,
                "stall": c.stalls + held,
                "slow-response": slow,
                "5xx-burst": sum(1 for b in self.front.injected if b.retry_after is None),
                "5xx-burst-retry-after": sum(1 for b in self.front.injected if b.retry_after is not None),
                "server-sigkill": self.kills,
            }
        )

    def target(self, spec: RunSpec) -> Path:
        return (
            self.root / BUCKET / self.key(spec)
            if spec.protocol == "wcs-append"
            else self.root / self.filename(spec)
        )

    @staticmethod
    def filename(spec: RunSpec) -> str:
        return f"run{spec.index:04d}-{spec.size}.bin"

    def key(self, spec: RunSpec) -> str:
        return f"k/{self.filename(spec)}"

    # -- fault set-up -------------------------------------------------------------------------
    def _queue_network_faults(self, spec: RunSpec, rng: random.Random) -> None:
        span = min(spec.size, spec.chunk) + 300  # within the first request or two of a connection
        faults: list[Fault] = []
        for kind in spec.kinds:
            if kind == "reset-up":
                faults += [Fault(cut_after=rng.randint(1, span)) for _ in range(rng.randint(1, 3))]
            elif kind == "answer-swallowed":
                faults += [Fault(swallow_after=rng.randint(1, span)) for _ in range(rng.randint(1, 2))]
            elif kind == "stall":  # the request stops half-way, or its answer is held back
                if rng.random() < 0.5:
                    # With several streams a connection may carry one short request only (the
                    # query, a 1-byte file's chunk): stall inside its request line and headers,
                    # which every request has, so the fault is reached whatever the streams.
                    reach = span if spec.streams == 1 else STALL_HEAD
                    faults.append(Fault(stall_after=rng.randint(1, reach), stall_for=STALL_TIMEOUT * 2.5))
                else:
                    faults.append(Fault(delay=STALL_TIMEOUT * 2.5))
            elif kind == "slow-response":
                faults += [
                    Fault(delay=rng.uniform(0.05, 0.3), rate=rng.uniform(1, 6) * MiB) for _ in range(2)
                ]
        rng.shuffle(faults)
        mixed: list[Fault] = []
        for n, fault in enumerate(faults):  # clean connections in between, so faults land at various points
            mixed += [Fault()] * (rng.randint(0, 1) if n else 0) + [fault]
        self.proxy.add(*mixed)

    def _timed_faults(self, spec: RunSpec, rng: random.Random) -> list[tuple[float, str]]:
        """(fraction of the file acknowledged, kind) for faults triggered by progress."""
        # Leave at least a chunk and a half to go, so a request is still to come when it fires
        # (a file of one or two chunks gets it before the first byte).
        latest = max(0.0, 1 - 1.5 * spec.chunk / max(spec.size, 1))
        out = []
        for kind in spec.kinds:
            if kind in (
                "reset-down",
                "5xx-burst",
                "5xx-burst-retry-after",
                "server-sigkill",
                "source-modified",
            ):
                out.append((rng.uniform(0.0, min(0.8, latest)), kind))
        return sorted(out)

    def _fire(self, kind: str, spec: RunSpec, rng: random.Random, source: Path, note: dict) -> None:
        if kind == "reset-down":  # the answer to the next request, cut after 0-200 of its bytes
            self.front.cut_answer(*[rng.randint(0, 200) for _ in range(rng.randint(1, 2))])
        elif kind.startswith("5xx-burst"):
            retry_after = rng.choice(["0", "1"]) if kind.endswith("retry-after") else None
            self.front.arm(rng.randint(1, 4), Burst(rng.choice([500, 502, 503, 504]), retry_after))
        elif kind == "server-sigkill":
            self.kill_server(rng)
        elif kind == "source-modified":
            with open(source, "r+b") as f:
                offset = rng.randrange(max(spec.size, 1))
                f.seek(offset)
                old = f.read(64)
                f.seek(offset)
                f.write(bytes(b ^ 0xFF for b in old) or b"x")
                f.flush()
                os.fsync(f.fileno())
            note["modified"] = True

    def _arm_timed_faults(self, spec: RunSpec, rng: random.Random, source: Path, note: dict) -> None:
        """Timed faults fire when the request bytes the front has passed on reach their share
        of the file: at an exact point of the upload, on a fast or a loaded machine alike."""
        base = self.front.forwarded
        for fraction, kind in self._timed_faults(spec, rng):

            def action(kind: str = kind) -> None:
                with self._firing:  # run() waits for a fault being fired before judging
                    note.setdefault("fired", []).append(kind)
                    self._fire(kind, spec, rng, source, note)

            self.front.at_bytes(base + int(fraction * spec.size), action)

    # -- one run --------------------------------------------------------------------------------
    def run(self, spec: RunSpec) -> RunResult:
        rng = random.Random(spec.seed)
        source = self.sources / self.filename(spec)
        _write_source(source, spec.size, spec.seed)
        original = sha256_path(source)
        before_received = self.received(spec.protocol)
        before_wire = self.front.forwarded
        before = self._counters()
        note: dict[str, Any] = {}
        if "source-modified" in spec.kinds:
            note["original_copy"] = self.workdir / "original.bin"
            shutil.copyfile(source, note["original_copy"])
        self._queue_network_faults(spec, rng)
        t0 = time.monotonic()
        scenario = next((k for k in spec.kinds if k in CLIENT_SCENARIOS), None)
        try:
            if scenario is None:
                contract = self._run_in_process(spec, rng, source, note)
            else:
                contract = self._run_children(spec, rng, source, note, scenario)
        except Exception as exc:  # noqa: BLE001 - a harness failure is reported, never hidden
            contract = f"harness error: {type(exc).__name__}: {exc}"
        finally:
            self._drain_proxy_queue()
            with self._firing:  # a fault fired from the front's thread has finished
                pass
            self._quiesce()
            # Runs are independent: a task a run left failed (a changed source) must not be
            # resumed by the next run's `resume --all`.
            shutil.rmtree(self.home / "tasks", ignore_errors=True)
        seconds = time.monotonic() - t0
        injected = self._counters() - before
        if "source-modified" in note.get("fired", []):
            injected["source-modified"] += 1
        for kind in ("client-sigkill", "kernel-restart", "two-resumers"):
            injected[kind] += note.get(kind, 0)
        # (A server SIGKILL in the same run may end the stalled request before the watchdog.)
        if (
            injected["stall"]
            and scenario is None
            and "server-sigkill" not in spec.kinds
            and not note.get("watchdog")
            and contract is None
        ):
            contract = "a stall was injected but the stall watchdog never fired"
        result = self._judge(spec, source, original, note, contract)
        result.injected, result.seconds = injected, seconds
        if result.outcome in ("ok",) and "source-modified" not in spec.kinds:
            result.resent = max(0, self.received(spec.protocol) - before_received - spec.size)
            result.wire = max(0, self.front.forwarded - before_wire - spec.size)
        self.results.append(result)
        self.log(
            f"run {spec.index:3d} {spec.protocol:10s} {spec.size:>8d} B chunk {spec.chunk >> 10:>3d} KiB "
            f"x{spec.workers} s{spec.streams} {'+'.join(spec.kinds):45s} "
            f"-> {result.outcome:10s} re-sent {result.resent} "
            f"wire+{result.wire} "
            f"({seconds:.1f} s) {result.detail}"
        )
        return result

    def _judge(
        self, spec: RunSpec, source: Path, original: str, note: dict, contract: str | None
    ) -> RunResult:
        target = self.target(spec)
        modified = "modified" in note
        exists = target.is_file()
        got = sha256_path(target) if exists else None
        size = target.stat().st_size if exists else 0
        if spec.protocol == "wcs-append" and size > spec.size:
            return RunResult(spec, "duplicated", detail=f"object is {size} bytes, source {spec.size}")
        if modified:
            if exists and got == original:
                return RunResult(spec, "ok", detail="modified after the last byte was read")
            if note.get("state") == "failed" and "changed" in note.get("error", ""):
                if spec.protocol == "uploader" and exists:
                    return RunResult(
                        spec, "corrupted", detail="a file is under the final name after a change"
                    )
                if exists and not _is_prefix(target, original_path=note["original_copy"]):
                    return RunResult(
                        spec, "corrupted", detail="the partial object is not a prefix of the source"
                    )
                return RunResult(spec, "detected", detail=note.get("error", "")[:80])
            if exists:
                return RunResult(spec, "corrupted", detail=f"mixed file stored (state {note.get('state')})")
            return RunResult(
                spec, "failed-contract", detail=f"change not reported: {note.get('error', note.get('state'))}"
            )
        if exists and got != original:
            return RunResult(spec, "corrupted", detail=f"sha256 differs ({size} of {spec.size} bytes)")
        if not exists or note.get("state") not in (None, "done"):
            return RunResult(spec, "lost", detail=f"state {note.get('state')}: {note.get('error', '')}"[:160])
        if contract:
            return RunResult(spec, "failed-contract", detail=contract)
        return RunResult(spec, "ok")

    def _engine_config(self, spec: RunSpec) -> dict[str, Any]:
        return dict(
            journal_dir=self.home / "tasks",
            chunk_size=spec.chunk,
            workers=spec.workers,
            streams=spec.streams,
            chunk_max=spec.chunk,
            stall_timeout=STALL_TIMEOUT,
            read_timeout=5.0,
            write_timeout=5.0,
            connect_timeout=2.0,
            backoff_base=0.05,
            backoff_cap=0.3,
            retries=30,
            retry_deadline=60.0,
            progress_interval=0.05,
        )

    def _submit_kwargs(self, spec: RunSpec) -> dict[str, Any]:
        if spec.protocol == "wcs-append":
            return wcs_submit(self.key(spec))
        return dict(protocol="uploader", filename=self.filename(spec))

    def _run_in_process(self, spec: RunSpec, rng: random.Random, source: Path, note: dict) -> str | None:
        from nbupload.engine import Engine, EngineConfig

        url = self.front.url + ("/upload" if spec.protocol == "uploader" else "")
        errors: list[str] = []
        engine = Engine(EngineConfig(**self._engine_config(spec)))
        engine.subscribe(lambda ev: errors.append(str(ev.snapshot.error)) if ev.kind == "error" else None)
        self._arm_timed_faults(spec, rng, source, note)
        try:
            task = engine.submit(str(source), url, **self._submit_kwargs(spec))
            snap = task.wait(RUN_TIMEOUT)
            engine.flush_events()
            note["state"] = str(snap.state)
            if snap.error is not None:
                note["error"] = str(snap.error)
            if snap.state.value not in ("done", "failed", "cancelled"):
                task.cancel()
        finally:
            engine.shutdown(wait=True, timeout=10)
        note["watchdog"] = sum(1 for e in errors if "stall" in e or "timed out" in e)
        return None

    # -- children: CLI processes and a Jupyter kernel -------------------------------------------
    def _journal(self, task_id: str | None = None) -> list[dict]:
        out = []
        for path in sorted((self.home / "tasks").glob("*.json")):
            try:
                obj = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if task_id is None or obj.get("id") == task_id or path.stem == task_id:
                obj.setdefault("id", path.stem)
                out.append(obj)
        return out

    def _cli(self, spec: RunSpec, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbupload", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(spec.protocol),
            cwd=REPO,
        )
        self.children.append(proc)
        return proc

    def _put_args(self, spec: RunSpec, source: Path) -> list[str]:
        if spec.protocol == "wcs-append":
            return [
                str(source),
                self.front.url,
                "-p",
                "wcs-append",
                "--scope",
                BUCKET,
                "--key",
                self.key(spec),
                "--chunk-size",
                str(spec.chunk),
                "--quiet",
            ]
        return [
            str(source),
            self.front.url + "/upload",
            "--filename",
            self.filename(spec),
            "--chunk-size",
            str(spec.chunk),
            "--streams",
            str(spec.streams),
            "--quiet",
        ]

    def _wait_acked(
        self, name: str, fraction: float, spec: RunSpec, alive: Callable[[], bool], timeout: float = 30.0
    ) -> dict | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end and alive():
            for entry in self._journal():
                named = entry.get("name") == name or entry.get("filename") == name
                acked = entry.get("acked", 0)
                # an entry with every byte acknowledged is a task finishing right now, not one
                # to kill mid-upload (chunks that grow fast can take it from the first chunk there)
                if named and fraction * spec.size <= acked < spec.size:
                    return entry
            time.sleep(0.01)
        return None

    def _run_children(
        self, spec: RunSpec, rng: random.Random, source: Path, note: dict, scenario: str
    ) -> str | None:
        # Slow the link so the interruption lands mid-upload (0.75-1.5 MiB/s: a 1 MiB file
        # takes longer than the journal's first acknowledged chunk). Every connection: one that
        # takes a queued fault at loopback speed made the first chunk look like a fast link, the
        # chunk size grew 8x and the rest of the file went in one request, never seen half-way.
        self.proxy.pace = rng.uniform(0.75, 1.5) * MiB
        self.proxy.default = Fault(rate=self.proxy.pace)
        name = self.filename(spec)
        fraction = rng.uniform(0.1, 0.7)
        self._arm_timed_faults(spec, rng, source, note)
        try:
            if scenario == "kernel-restart":
                return self._run_kernel(spec, source, note, name, fraction)
            put = self._cli(spec, "put", *self._put_args(spec, source))
            entry = self._wait_acked(name, fraction, spec, lambda: put.poll() is None)
            if entry is None:  # finished (or failed) before the kill: still a valid run
                _out, err = put.communicate(timeout=RUN_TIMEOUT)
                note["state"] = "done" if put.returncode == 0 else "failed"
                note["error"] = err.strip()[-300:]
                return None
            put.send_signal(signal.SIGKILL)
            put.wait(10)
            note[scenario] = 1
            task_id = entry["id"]
            if scenario == "client-sigkill":
                res = self._cli(spec, "resume", task_id, "--quiet")
                _out, err = res.communicate(timeout=RUN_TIMEOUT)
                note["state"] = "done" if res.returncode == 0 else "failed"
                note["error"] = err.strip()[-300:]
                return None
            a, b = (
                self._cli(spec, "resume", task_id, "--quiet"),
                self._cli(spec, "resume", task_id, "--quiet"),
            )
            outs = [p.communicate(timeout=RUN_TIMEOUT) for p in (a, b)]
            results = [(p.returncode, err) for p, (_, err) in zip((a, b), outs, strict=True)]
            codes = sorted(code for code, _ in results)
            note["state"] = "done" if 0 in codes else "failed"
            note["error"] = " | ".join(err.strip()[-200:] for _, err in results)
            if codes != [0, 1]:
                return f"two resumers: exit codes {codes}, expected exactly one winner: {note['error']}"
            loser = next(err for code, err in results if code == 1)
            clear = ("being uploaded by another process", "finished in another process", "no unfinished task")
            if not any(text in loser for text in clear) or "Traceback" in loser:
                return f"two resumers: the loser's error is not clear: {loser.strip()[-200:]}"
            return None
        finally:
            self.proxy.default = Fault()
            self.proxy.pace = None

    def _run_kernel(self, spec: RunSpec, source: Path, note: dict, name: str, fraction: float) -> str | None:
        from jupyter_client import KernelManager

        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=self.env(spec.protocol), cwd=str(REPO))
        try:
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            line = " ".join(_quote(a) for a in self._put_args(spec, source))
            reply, _ = _execute(kc, f"%load_ext nbupload\n%upload {line}")
            if reply:
                return f"kernel: %upload failed: {reply}"
            entry = self._wait_acked(name, fraction, spec, lambda: "modified" not in note)
            if entry is None and "modified" in note:  # the change came first: restart all the same
                entry = next((e for e in self._journal() if e.get("filename") == name), None)
            if entry is None:  # done (or failed) before the restart
                self._kernel_outcome(kc, note)
                return None
            kc.stop_channels()
            km.restart_kernel(now=True)
            note["kernel-restart"] = 1
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            reply, _out = _execute(kc, "%load_ext nbupload\n%upload resume all")
            if reply and "changed" not in reply:  # a changed source is reported here: fine
                return f"kernel: %upload resume all failed: {reply}"
            self._kernel_outcome(kc, note, reply)
            if note["state"] == "done" and self._journal(entry["id"]):
                return "kernel: the task finished but its journal entry is still there"
            kc.stop_channels()
            return None
        finally:
            km.shutdown_kernel(now=True)

    @staticmethod
    def _kernel_outcome(kc: Any, note: dict, reply: str = "") -> None:
        """Wait until the kernel's tasks are all finished; their states and errors into ``note``."""
        code = (
            "import json; from nbupload.api import get_engine; print('TASKS', json.dumps("
            "[(t.state.value, str(t.error or '')) for t in get_engine().tasks()]))"
        )
        end = time.monotonic() + RUN_TIMEOUT
        tasks: list = []
        while time.monotonic() < end:
            _, out = _execute(kc, code)
            tasks = json.loads(out.split("TASKS", 1)[1]) if "TASKS" in out else []
            if not any(state in ("queued", "connecting", "uploading") for state, _ in tasks):
                break
            time.sleep(0.2)
        states = [state for state, _ in tasks]
        note["state"] = "done" if states and all(s == "done" for s in states) else "failed"
        note["error"] = (
            " | ".join([reply, *(err for _, err in tasks if err)]).strip(" |") or f"tasks {states}"
        )


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _execute(kc: Any, code: str, timeout: float = 60) -> tuple[str, str]:
    """Run ``code`` in the kernel: (error text, '' when it succeeded; stdout)."""
    msg_id = kc.execute(code)
    output: list[str] = []
    stdout: list[str] = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "error":
            output.append("\n".join(msg["content"]["traceback"])[-500:])
        elif kind == "stream" and msg["content"]["name"] == "stderr":
            output.append(msg["content"]["text"])
        elif kind == "stream":
            stdout.append(msg["content"]["text"])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    if reply["content"]["status"] != "ok":
        return "".join(output) or reply["content"].get("evalue", "error"), "".join(stdout)
    return "", "".join(stdout)


def _is_prefix(target: Path, original_path: Path) -> bool:
    size = target.stat().st_size
    with open(target, "rb") as a, open(original_path, "rb") as b:
        while size > 0:
            n = min(size, MiB)
            if a.read(n) != b.read(n):
                return False
            size -= n
    return True


def format_table(results: list[RunResult], seed: int, requests_by_process: list[int] | None = None) -> str:
    """The figures: faults injected by kind, runs, corrupted, lost, duplicated, re-sent bytes."""
    injected: Counter = Counter()
    for r in results:
        injected.update(r.injected)
    outcomes = Counter(r.outcome for r in results)
    resent = [r.resent for r in results if r.resent is not None]
    wire = [r.wire for r in results if r.wire is not None]
    protocols = Counter(r.spec.protocol for r in results)
    sizes = sorted({r.spec.size for r in results})
    where = f"{len(requests_by_process)} server processes on one root, " if requests_by_process else ""
    lines = [
        f"nbupload fault campaign: {where}seed {seed}, {len(results)} runs "
        f"({', '.join(f'{n} {p}' for p, n in sorted(protocols.items()))}; "
        f"sizes {', '.join(map(str, sizes))} B)",
        "",
        "| fault kind | injected |",
        "|---|---:|",
    ]
    lines += [f"| {kind} | {injected[kind]} |" for kind in KINDS]
    lines += [
        "",
        "| runs | ok | change detected | corrupted | lost | duplicated | contract failures |"
        " re-sent bytes median | re-sent bytes max | extra wire bytes median | extra wire bytes max |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(results)} | {outcomes['ok']} | {outcomes['detected']} | {outcomes['corrupted']} | "
        f"{outcomes['lost']} | {outcomes['duplicated']} | {outcomes['failed-contract']} | "
        f"{int(statistics.median(resent)) if resent else 0} | {max(resent) if resent else 0} | "
        f"{int(statistics.median(wire)) if wire else 0} | {max(wire) if wire else 0} |",
    ]
    if requests_by_process:
        lines += [
            "",
            "upload requests answered per server process: "
            + ", ".join(f"process {n + 1}: {k}" for n, k in enumerate(requests_by_process)),
        ]
    bad = [r for r in results if r.outcome in ("corrupted", "lost", "duplicated", "failed-contract")]
    if bad:
        lines += ["", "failures:"] + [
            f"- run {r.spec.index} {r.spec.protocol} {r.spec.size} B "
            f"{'+'.join(r.spec.kinds)}: {r.outcome}: {r.detail}"
            for r in bad
        ]
    return "\n".join(lines)
