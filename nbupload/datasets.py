"""In-memory objects as upload sources (``%upload --var df URL --as data.parquet``).

The engine uploads anything with ``.size`` and ``.pread(n, offset)``. The formats here are
produced without an extra full copy in memory where the format allows:

- bytes-like: a view of the object itself;
- ``.npy``: a small header plus the array's own buffer (a :class:`CompositeSource`);
- ``.csv`` / ``.parquet`` (pandas): serialised by pandas/pyarrow straight into a spool file
  on disk, which is then streamed like any file (and stays resumable after a restart);
- ``.json``: small by nature; encoded once.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CompositeSource", "Dataset", "DatasetError", "SUPPORTED_FORMATS", "npy_header", "to_dataset"]

SUPPORTED_FORMATS = (".csv", ".json", ".npy", ".parquet", "(any other name: bytes or str)")

_MIME = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".npy": "application/octet-stream",
    ".parquet": "application/vnd.apache.parquet",
}


class DatasetError(ValueError):
    """The object cannot be written in the requested format (message meant for the user)."""


class CompositeSource:
    """Several bytes-like pieces read as one source, without concatenating them."""

    __slots__ = ("_offsets", "_views", "size")

    def __init__(self, pieces: Sequence[bytes | bytearray | memoryview]) -> None:
        self._views = [memoryview(p).cast("B") for p in pieces]
        self._offsets: list[int] = []
        pos = 0
        for view in self._views:
            self._offsets.append(pos)
            pos += view.nbytes
        self.size = pos

    def pread(self, size: int, offset: int) -> bytes:
        if size <= 0 or offset >= self.size:
            return b""
        end = min(offset + size, self.size)
        out = []
        i = bisect.bisect_right(self._offsets, offset) - 1
        while offset < end and i < len(self._views):
            start = self._offsets[i]
            view = self._views[i]
            take = view[offset - start : min(end - start, view.nbytes)]
            out.append(take)
            offset += take.nbytes
            i += 1
        return b"".join(out)


@dataclass
class Dataset:
    """What the engine uploads for an object: ``source`` is bytes-like, a source, or a path.

    ``spool`` is a temporary file to delete once the task is finished (or ``None``).
    """

    source: Any
    filename: str
    mime: str
    size: int
    spool: Path | None = None


def npy_header(array: Any) -> tuple[bytes, memoryview]:
    """The ``.npy`` header for ``array`` and a zero-copy byte view of its data."""
    import numpy as np
    from numpy.lib import format as npformat

    if array.dtype.hasobject:
        raise DatasetError(
            "arrays of Python objects cannot be saved as .npy without pickling; convert the dtype first"
        )
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = np.ascontiguousarray(array)  # a strided view has no single buffer: one copy
    # the transpose of an F-ordered array is C-contiguous over the same bytes
    data = array if array.flags.c_contiguous else array.T
    header = npformat.header_data_from_array_1_0(array)
    buf = io.BytesIO()
    try:
        npformat.write_array_header_1_0(buf, header)
    except ValueError:  # header over 64 KiB (huge structured dtypes)
        buf = io.BytesIO()
        npformat.write_array_header_2_0(buf, header)
    view = memoryview(data.reshape(-1).view(np.uint8)) if data.size else memoryview(b"")
    return buf.getvalue(), view


def _spool(directory: str | os.PathLike[str] | None, suffix: str) -> Path:
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="nbupload-var-", suffix=suffix, dir=directory)
    os.close(fd)
    return Path(name)


def to_dataset(obj: Any, filename: str, *, spool_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Turn ``obj`` into an upload source in the format named by ``filename``'s extension."""
    ext = Path(filename).suffix.lower()
    mime = _MIME.get(ext, "application/octet-stream")
    type_name = f"{type(obj).__module__}.{type(obj).__qualname__}"

    if ext == ".npy":
        try:
            import numpy as np
        except ImportError:
            raise DatasetError("writing .npy needs numpy (pip install 'nbupload[data]')") from None
        array = obj if isinstance(obj, np.ndarray) else None
        if array is None and hasattr(obj, "to_numpy"):
            array = obj.to_numpy()
        if array is None:
            try:
                array = np.asarray(obj)
            except Exception as exc:  # noqa: BLE001 - numpy raises many kinds
                raise DatasetError(f"cannot turn {type_name} into an array: {exc}") from None
        head, data = npy_header(array)
        source = CompositeSource([head, data])
        return Dataset(source, filename, mime, source.size)

    if ext in (".csv", ".parquet") and _is_dataframe(obj):
        path = _spool(spool_dir, ext)
        try:
            if ext == ".csv":
                obj.to_csv(path, index=False)
            else:
                try:
                    obj.to_parquet(path, index=False)
                except ImportError as exc:
                    raise DatasetError(f"writing .parquet needs pyarrow: {exc}") from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Dataset(str(path), filename, mime, path.stat().st_size, spool=path)

    if ext == ".parquet":
        raise DatasetError(f".parquet needs a pandas DataFrame, not {type_name}")

    if ext == ".json":
        if _is_dataframe(obj):
            data = obj.to_json(orient="records").encode("utf-8")
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            data = obj
        else:
            try:
                data = json.dumps(obj, ensure_ascii=False, default=_json_default).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise DatasetError(f"{type_name} is not JSON-serialisable: {exc}") from None
        return Dataset(data, filename, mime, memoryview(data).nbytes)

    if ext == ".csv" and hasattr(obj, "to_csv"):  # a pandas Series
        path = _spool(spool_dir, ext)
        obj.to_csv(path)
        return Dataset(str(path), filename, mime, path.stat().st_size, spool=path)

    if isinstance(obj, str):
        data = obj.encode("utf-8")
        return Dataset(data, filename, mime if ext in _MIME else "text/plain; charset=utf-8", len(data))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        view = memoryview(obj)
        return Dataset(obj, filename, mime, view.nbytes)
    try:
        view = memoryview(obj)  # any buffer-protocol object (array.array, mmap ...)
    except TypeError:
        raise DatasetError(
            f"cannot upload a {type_name} as {filename!r}: use --as with one of "
            + ", ".join(SUPPORTED_FORMATS)
        ) from None
    return Dataset(obj, filename, mime, view.nbytes)


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "to_csv")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")
