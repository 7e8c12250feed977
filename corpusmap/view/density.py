"""Density images: of all points, for maps drawn as a sample (the page shows it under the sampled points), and of
a reference map that the points were placed into (grey, underneath)."""
from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

RGB = (59, 110, 168)  # the page's plain point colour
BACKGROUND_RGB = (150, 150, 150)  # a reference map under the points: grey, as in the figures


def density_png(xn: np.ndarray, yn: np.ndarray, size: int = 1024, rgb: tuple = RGB, radius: int = 0) -> bytes:
    """RGBA PNG over the normalised square [-1, 1]^2 (row 0 = top) in colour ``rgb``: log-scaled counts as
    opacity, each point a disc of ``radius`` image pixels (0: one pixel)."""
    counts, _, _ = np.histogram2d(np.asarray(yn, dtype=np.float64), np.asarray(xn, dtype=np.float64),
                                  bins=size, range=[[-1, 1], [-1, 1]])
    counts = counts[::-1]
    level = np.log1p(counts)
    top = level.max() or 1.0
    alpha = np.where(counts > 0, 40 + 200 * level / top, 0).astype(np.uint8)
    if radius > 0:
        from scipy.ndimage import grey_dilation

        offsets = np.arange(-radius, radius + 1)
        alpha = grey_dilation(alpha, footprint=np.hypot(*np.meshgrid(offsets, offsets)) <= radius + 0.5)
    rgba = np.empty((size, size, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = rgb
    rgba[..., 3] = alpha
    return encode_png(rgba)


def dot_radius(n: int) -> int:
    """Image pixels of a point's disc in a 1,024-pixel density image of ``n`` points: about half the page's point
    size for that many points at the whole-map view, so that a small map's points show as dots, not specks."""
    return 3 if n <= 10_000 else 2 if n <= 50_000 else 1 if n <= 1_000_000 else 0


def density_payload(xn: np.ndarray, yn: np.ndarray, size: int = 1024, rgb: tuple = RGB, radius: int = 0) -> dict:
    return {"png": base64.b64encode(density_png(xn, yn, size, rgb, radius)).decode("ascii"), "size": size}


def encode_png(rgba: np.ndarray) -> bytes:
    """A minimal PNG encoder (8-bit RGBA, no filtering): enough for one image, no imaging dependency."""
    h, w, _ = rgba.shape
    raw = np.concatenate([np.zeros((h, 1), dtype=np.uint8), rgba.reshape(h, w * 4)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
