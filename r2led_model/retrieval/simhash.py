"""SimHash signatures and exact Hamming distances on packed uint64 words (numpy only).

SimHash (Charikar 2002, "Similarity estimation techniques from rounding algorithms"): draw `bits`
random Gaussian hyperplanes h_j; bit j of a vector v is 1 when v · h_j > 0. For two vectors at
angle θ, each bit differs with probability θ / π, so the normalised Hamming distance of their
signatures is an unbiased estimate of θ / π. ETA (Chen et al. 2021) ranks a lifelong history by
this distance; R2LED's collaborative view uses it the same way (design.md §4, "Routes").

Layout: a signature is W = ceil(bits / 64) uint64 words; bit j lives in word j // 64 at bit
position j % 64 (least significant first). Bits at positions >= `bits` in the last word are 0,
so distances between signatures of the same width never count them.

The hyperplanes depend only on (input dimension, bits, seed): every Spark worker and the driver
draw the same ones from ``np.random.default_rng(seed)``. Because the (bits, d) matrix is filled
row by row, the first b hyperplanes are the same for any ``bits >= b``.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64

# SWAR popcount constants (Hacker's Delight, 5-2), applied to whole uint64 arrays.
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


def words_for(bits: int) -> int:
    """W, the number of uint64 words that hold `bits` signature bits."""
    if bits < 1:
        raise ValueError(f"bits must be >= 1, got {bits}")
    return (bits + WORD_BITS - 1) // WORD_BITS


def simhash_hyperplanes(dim: int, bits: int, seed: int) -> np.ndarray:
    """(bits, dim) float64 standard-normal hyperplane normals, a pure function of (dim, bits, seed)."""
    if dim < 1:
        raise ValueError(f"vector dimension must be >= 1, got {dim}")
    words_for(bits)  # validates bits
    return np.random.default_rng(seed).standard_normal((bits, dim))


def signatures_from_hyperplanes(vectors: np.ndarray, hyperplanes: np.ndarray) -> np.ndarray:
    """(N, d) vectors, (bits, d) hyperplanes → (N, W) uint64; bit j = (v · h_j > 0)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    hyperplanes = np.asarray(hyperplanes, dtype=np.float64)
    if vectors.ndim != 2 or hyperplanes.ndim != 2 or vectors.shape[1] != hyperplanes.shape[1]:
        raise ValueError(f"expected vectors (N, d) and hyperplanes (bits, d), got {vectors.shape} and "
                         f"{hyperplanes.shape}")
    n, bits = len(vectors), len(hyperplanes)
    width = words_for(bits)
    on = vectors @ hyperplanes.T > 0  # (N, bits)
    padded = np.zeros((n, width * WORD_BITS), dtype=bool)  # (N, W*64); unused high bits stay 0
    padded[:, :bits] = on
    packed = np.packbits(padded, axis=1, bitorder="little")  # (N, W*8) bytes, bit j of a word first
    # Little-endian bytes → words, independent of the machine's byte order.
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64).reshape(n, width)  # (N, W)


def simhash_signatures(vectors: np.ndarray, bits: int, seed: int) -> np.ndarray:
    """(N, d) float vectors → (N, W) uint64 SimHash signatures with `bits` seeded random hyperplanes."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"expected vectors of shape (N, d), got {vectors.shape}")
    return signatures_from_hyperplanes(vectors, simhash_hyperplanes(vectors.shape[1], bits, seed))


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (same shape, int64), by the SWAR trick: exact, no lookup table."""
    x = np.asarray(words, dtype=np.uint64)
    with np.errstate(over="ignore"):  # the final multiply wraps on purpose
        x = x - ((x >> np.uint64(1)) & _M1)
        x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
        x = (x + (x >> np.uint64(4))) & _M4
        x = (x * _H01) >> np.uint64(56)
    return x.astype(np.int64)


def has_signature(signatures: np.ndarray) -> np.ndarray:
    """(..., W) uint64 → (...) bool: not all-zero. All-zero words stand for "no collaborative vector"
    (what a catalogue lookup gives an item without one); a real vector gets them only if it lies on
    the negative side of every hyperplane (probability 2^-bits) or is zero, which has no direction."""
    return (np.asarray(signatures) != 0).any(axis=-1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distance of (..., W) uint64 signatures, broadcast over the leading axes → (...) int64."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"signatures need the same last axis (W words), got {a.shape} and {b.shape}")
    for name, x in (("a", a), ("b", b)):
        if x.dtype != np.uint64:
            raise TypeError(f"{name}: signatures must be uint64 (view int64 words with .view(np.uint64)), "
                            f"got {x.dtype}")
    return popcount(a ^ b).sum(axis=-1)  # (..., W) → (...)
