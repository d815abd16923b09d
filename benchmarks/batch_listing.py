"""Listing a journaled batch (``nbupload ls``, ``%upload list``, the panel's offers): how long
``unfinished_batches()`` takes for one batch of N files, and how many of its files it stats.

``python -m benchmarks.batch_listing [--files 10000] [--runs 5]`` writes N x 1 KiB files and a
batch record (with half its names in the done log) under a temp dir, then times the listing.
Run from an older checkout (``PYTHONPATH=OLD python -m benchmarks.batch_listing``) for the
figure before: a record without sizes makes the listing stat every file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "measure"]


def measure(files: int, runs: int) -> dict[str, Any]:
    """Seconds per listing (median and best of ``runs``) and stats of the batch's files per listing."""
    from nbupload.batch import unfinished_batches
    from nbupload.engine import Engine, EngineConfig
    from nbupload.engine.journal import BatchJournal, BatchRecord

    with tempfile.TemporaryDirectory(prefix="nbupload-bench-ls-") as tmp:
        folder = Path(tmp) / "res"
        folder.mkdir()
        items = []
        for i in range(files):
            path = folder / f"f{i:05d}.bin"
            path.write_bytes(b"x" * 1024)
            items.append((str(path), path.name))
        engine = Engine(EngineConfig(journal_dir=Path(tmp) / "journal"))
        try:
            journal = BatchJournal(engine.config.tasks_dir)
            kw: dict[str, Any] = {}
            if "sizes" in BatchRecord.__dataclass_fields__:
                kw["sizes"] = [1024] * files
            journal.write(BatchRecord("0123456789ab", "http://127.0.0.1:9/upload", "uploader", items, **kw))
            log = journal.done_log("0123456789ab")
            log.add([name for _path, name in items[: files // 2]])
            log.close()

            real_stat, statted = os.stat, [0]

            def counting_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
                if str(path).startswith(str(folder)):
                    statted[0] += 1
                return real_stat(path, *args, **kwargs)

            times = []
            for _ in range(runs):
                start = time.perf_counter()
                (batch,) = unfinished_batches(engine)
                times.append(time.perf_counter() - start)
            os.stat = counting_stat  # type: ignore[assignment]  # one more listing, counted
            try:
                unfinished_batches(engine)
            finally:
                os.stat = real_stat
            assert (batch.files, batch.done, batch.bytes_total) == (files, files // 2, files * 1024)
        finally:
            engine.shutdown(wait=False)
    return {
        "files": files,
        "median_s": statistics.median(times),
        "best_s": min(times),
        "stats_per_listing": statted[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_listing", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    r = measure(args.files, args.runs)
    print(
        f"batch listing, {r['files']} files (half done): median {r['median_s'] * 1000:.1f} ms, "
        f"best {r['best_s'] * 1000:.1f} ms, {r['stats_per_listing']} stats of its files per listing"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
