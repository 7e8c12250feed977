"""Byte formats shared with the page's JavaScript: typed arrays as base64, script-safe JSON, varints, bucket hash."""
from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np

_DTYPES = {("u", 1): "u8", ("u", 2): "u16", ("u", 4): "u32", ("i", 4): "i32", ("f", 4): "f32"}

# Inside <script> the HTML parser ends the element at "</script" and treats "<!--" specially; escaping every
# <, > and & (and the JS line separators) keeps any data, including hostile titles, inert text.
_SCRIPT_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def typed_array(values: np.ndarray) -> dict:
    """``{"dtype", "b64"}``: the little-endian bytes of a 1-D array of a dtype the page decodes."""
    a = np.asarray(values)
    code = _DTYPES.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise TypeError(f"no page dtype for {a.dtype}")
    little = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"dtype": code, "b64": base64.b64encode(little.tobytes()).decode("ascii")}


def script_json(value: Any) -> str:
    """Compact JSON that is safe to place inside a <script> element (and valid JavaScript)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in _SCRIPT_ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    return text


def put_call(key: str, value: Any) -> str:
    """The JavaScript of a data script: ``corpusmapPut("key", {...});``."""
    return f"corpusmapPut({script_json(key)},{script_json(value)});\n"


def varint_gaps(rows: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LEB128 bytes of sorted rows stored as gaps within each group, and the byte offset of every group.

    ``rows`` is grouped (each group ascending); ``starts`` are the group starts (with ``len(rows)`` appended).
    The first value of a group is its row, the others the gap to the previous row.
    """
    rows = rows.astype(np.int64, copy=False)
    gaps = np.diff(rows, prepend=0)
    gaps[starts[:-1]] = rows[starts[:-1]]
    nbytes = np.ones(len(gaps), dtype=np.int64)
    for shift in (7, 14, 21, 28):
        nbytes += gaps >= (1 << shift)
    ends = np.cumsum(nbytes)
    begins = ends - nbytes
    out = np.zeros(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    for j in range(5):
        has = nbytes > j
        if not has.any():
            break
        byte = (gaps[has] >> (7 * j)) & 0x7F
        more = nbytes[has] > j + 1
        out[begins[has] + j] = (byte | (more.astype(np.int64) << 7)).astype(np.uint8)
    group_offsets = np.concatenate([[0], ends])[starts]
    return out, group_offsets


def bucket_of(token: str, buckets: int) -> int:
    """The index bucket of a token: CRC-32 of its UTF-8 bytes modulo the bucket count (same in the page)."""
    return zlib.crc32(token.encode("utf-8")) % buckets
