"""In-memory objects as sources: formats round-trip, and the zero-copy ones really are."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from nbupload.datasets import CompositeSource, DatasetError, to_dataset


def read_all(source, step=7):
    return b"".join(source.pread(step, off) for off in range(0, source.size, step))


def test_composite_source_reads_across_pieces():
    src = CompositeSource([b"abc", b"", memoryview(b"defg"), bytearray(b"h")])
    assert src.size == 8
    assert src.pread(8, 0) == b"abcdefgh"
    assert src.pread(4, 2) == b"cdef"
    assert src.pread(100, 6) == b"gh"
    assert src.pread(3, 8) == b""
    assert read_all(src, 3) == b"abcdefgh"


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float64).reshape(2, 3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        np.arange(40)[::3],
        np.zeros((0, 3)),
        np.array([(1, 2.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
    ],
)
def test_npy_round_trips(array):
    data = to_dataset(array, "x.npy")
    back = np.load(io.BytesIO(read_all(data.source)))
    assert back.shape == array.shape and back.dtype == array.dtype and (back == array).all()
    assert data.size == data.source.size and data.spool is None


def test_npy_shares_the_array_buffer():
    array = np.zeros(1 << 16, dtype=np.uint8)
    data = to_dataset(array, "x.npy")
    header = data.source.pread(128, 0)
    array[0] = 42  # no copy was taken: the source sees the change
    head_len = header.index(b"\n") + 1
    assert data.source.pread(1, head_len) == b"\x2a"


def test_object_arrays_are_refused():
    with pytest.raises(DatasetError, match="pickling"):
        to_dataset(np.array([object()]), "x.npy")


def test_dataframe_csv_and_parquet_are_spooled_to_disk(tmp_path):
    df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    csv = to_dataset(df, "t.csv", spool_dir=tmp_path)
    assert csv.spool is not None and csv.spool.parent == tmp_path
    assert pd.read_csv(csv.source).equals(df)
    pq = to_dataset(df, "t.parquet", spool_dir=tmp_path)
    assert pd.read_parquet(pq.source).equals(df) and pq.mime == "application/vnd.apache.parquet"


def test_json_bytes_and_str():
    data = to_dataset({"a": [1, 2], "n": np.int64(3)}, "d.json")
    assert json.loads(bytes(data.source)) == {"a": [1, 2], "n": 3}
    raw = bytearray(b"hello")
    assert to_dataset(raw, "h.bin").source is raw
    assert to_dataset("héllo", "h.txt").source == "héllo".encode()


def test_unsupported_objects_get_a_clear_error():
    with pytest.raises(DatasetError, match="--as"):
        to_dataset(object(), "x.bin")
    with pytest.raises(DatasetError, match="DataFrame"):
        to_dataset([1, 2], "x.parquet")
    with pytest.raises(DatasetError, match="JSON"):
        to_dataset({"a": object()}, "x.json")
