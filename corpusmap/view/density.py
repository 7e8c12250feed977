"""A density image of all points, for maps drawn as a sample: the page shows it under the sampled points."""
from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

RGB = (59, 110, 168)  # the page's plain point colour


def density_png(xn: np.ndarray, yn: np.ndarray, size: int = 1024) -> bytes:
    """RGBA PNG over the normalised square [-1, 1]^2 (row 0 = top): log-scaled counts as opacity."""
    counts, _, _ = np.histogram2d(np.asarray(yn, dtype=np.float64), np.asarray(xn, dtype=np.float64),
                                  bins=size, range=[[-1, 1], [-1, 1]])
    counts = counts[::-1]
    level = np.log1p(counts)
    top = level.max() or 1.0
    alpha = np.where(counts > 0, 40 + 200 * level / top, 0).astype(np.uint8)
    rgba = np.empty((size, size, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = RGB
    rgba[..., 3] = alpha
    return encode_png(rgba)


def density_payload(xn: np.ndarray, yn: np.ndarray, size: int = 1024) -> dict:
    return {"png": base64.b64encode(density_png(xn, yn, size)).decode("ascii"), "size": size}


def encode_png(rgba: np.ndarray) -> bytes:
    """A minimal PNG encoder (8-bit RGBA, no filtering): enough for one image, no imaging dependency."""
    h, w, _ = rgba.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rgba.reshape(h, w * 4)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
