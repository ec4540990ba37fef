"""The frozen RQ-VAE codebook artifact and Semantic-ID assignment, numpy only.

This is what Spark workers receive (broadcast or shipped as one ``.npz``): the trained encoder
MLP and the L residual codebooks, as plain float64 arrays. Assigning codes is residual
quantisation (RQ-VAE, Lee et al. 2022 "Autoregressive Image Generation using Residual
Quantization"): level l picks the code nearest to the residual left by levels < l. The L codes
of an item, plus an optional digit that separates colliding items, are its Semantic ID (TIGER,
Rajput et al. 2023 "Recommender Systems with Generative Retrieval").

float64 is the canonical precision: ``RQVAE.assign_codes`` in ``rqvae.py`` repeats exactly this
computation in torch float64, so the driver and the workers agree on every code.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
# Rows per distance block: bounds memory at ASSIGN_CHUNK_ROWS × K floats per level. The torch
# float64 path uses the same blocks, so both libraries see identically shaped matrix products.
ASSIGN_CHUNK_ROWS = 8192


@dataclass(frozen=True, kw_only=True, eq=False)
class Codebook:
    """A trained encoder plus L residual codebooks of K codes each, all float64.

    encoder_weights: one ``(W (out, in), b (out,))`` per linear layer, ReLU between layers and
        none after the last; the first layer takes ``input_dim`` columns, the last gives ``d``.
    codebooks: ``(L, K, d)``; ``codebooks[l, k]`` is code k of level l.
    input_dim: D, the width of the item vectors this codebook accepts.

    Arrays are copied to read-only, C-contiguous float64 so that the content hash (``version``)
    cannot go stale.
    """

    encoder_weights: tuple[tuple[np.ndarray, np.ndarray], ...]
    codebooks: np.ndarray
    input_dim: int

    def __post_init__(self) -> None:
        layers = tuple((_frozen_float64(w), _frozen_float64(b)) for w, b in self.encoder_weights)
        codebooks = _frozen_float64(self.codebooks)
        if not layers:
            raise ValueError("encoder_weights: need at least one (W, b) layer")
        if codebooks.ndim != 3 or 0 in codebooks.shape:
            raise ValueError(f"codebooks: expected a non-empty (L, K, d) array, got shape {codebooks.shape}")
        width = int(self.input_dim)
        for i, (w, b) in enumerate(layers):
            if w.ndim != 2 or w.shape[1] != width:
                raise ValueError(f"encoder layer {i}: W has shape {w.shape}, expected (out, {width})")
            if b.shape != (w.shape[0],):
                raise ValueError(f"encoder layer {i}: b has shape {b.shape}, expected ({w.shape[0]},)")
            width = w.shape[0]
        if width != codebooks.shape[2]:
            raise ValueError(f"encoder output width {width} != codebook dimension {codebooks.shape[2]}")
        object.__setattr__(self, "encoder_weights", layers)
        object.__setattr__(self, "codebooks", codebooks)
        object.__setattr__(self, "input_dim", int(self.input_dim))

    # ---- shape ------------------------------------------------------------------------

    @property
    def levels(self) -> int:
        return int(self.codebooks.shape[0])

    @property
    def codebook_size(self) -> int:
        return int(self.codebooks.shape[1])

    @property
    def latent_dim(self) -> int:
        return int(self.codebooks.shape[2])

    @cached_property
    def version(self) -> str:
        """``"cb-"`` + 12 hex digits of sha256 over every array's shape and bytes (a content hash)."""
        digest = hashlib.sha256()
        digest.update(f"format={FORMAT_VERSION};input_dim={self.input_dim};layers={len(self.encoder_weights)}".encode())
        for array in (*(a for layer in self.encoder_weights for a in layer), self.codebooks):
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
        return "cb-" + digest.hexdigest()[:12]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Codebook):
            return NotImplemented
        return (
            self.input_dim == other.input_dim
            and len(self.encoder_weights) == len(other.encoder_weights)
            and all(np.array_equal(a, b) for la, lb in zip(self.encoder_weights, other.encoder_weights)
                    for a, b in zip(la, lb))
            and np.array_equal(self.codebooks, other.codebooks)
        )

    def __hash__(self) -> int:
        return hash(self.version)

    def __reduce__(self) -> tuple:
        # Pickling (Spark broadcast) goes through the constructor, so the copy is read-only too.
        return (_rebuild, (self.encoder_weights, self.codebooks, self.input_dim))

    # ---- computation ------------------------------------------------------------------

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) item vectors → (N, d) float64 latents: the encoder MLP's forward pass."""
        return self._encode(self._checked(vectors))

    def assign_codes(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) item vectors → (N, L) int64 codes by residual quantisation (ties → lowest index)."""
        x = self._checked(vectors)
        codes = np.empty((x.shape[0], self.levels), dtype=np.int64)
        # ||E||² per code, computed once per level (the same for every block).
        code_norms = np.einsum("lkd,lkd->lk", self.codebooks, self.codebooks)  # (L, K)
        for start in range(0, x.shape[0], ASSIGN_CHUNK_ROWS):
            residual = self._encode(x[start:start + ASSIGN_CHUNK_ROWS])  # (n, d)
            for level in range(self.levels):
                table = self.codebooks[level]  # (K, d)
                # ||r - e||² = ||r||² - 2 r·e + ||e||²; ||r||² is the same for every code of a row,
                # so it is left out: it cannot change the argmin, only add rounding noise.
                scores = code_norms[level][None, :] - 2.0 * (residual @ table.T)  # (n, K)
                chosen = np.argmin(scores, axis=1)  # first minimum → lowest index on ties
                codes[start:start + len(chosen), level] = chosen
                residual = residual - table[chosen]  # (n, d)
        return codes

    def decode_codes(self, codes: np.ndarray) -> np.ndarray:
        """(N, L) codes → (N, d) float64: the sum of each row's chosen code vectors."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.levels:
            raise ValueError(f"codes: expected shape (N, {self.levels}), got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes: expected integers, got dtype {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes: values must lie in [0, {self.codebook_size}), "
                             f"got [{codes.min()}, {codes.max()}]")
        chosen = self.codebooks[np.arange(self.levels)[None, :], codes]  # (N, L, d)
        return chosen.sum(axis=1)  # (N, d)

    def quantize(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) item vectors → (N, d) z_q, the latent the codes stand for."""
        return self.decode_codes(self.assign_codes(vectors))

    # ---- persistence ------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write one ``.npz`` (uncompressed) holding the format version and every array."""
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "input_dim": np.array(self.input_dim, dtype=np.int64),
            "num_layers": np.array(len(self.encoder_weights), dtype=np.int64),
            "codebooks": self.codebooks,
        }
        for i, (w, b) in enumerate(self.encoder_weights):
            arrays[f"W{i}"] = w
            arrays[f"b{i}"] = b
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Through a buffer: np.savez would append ".npz" to a path that lacks it.
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        # Atomic: never a truncated codebook under its name; a failed write (a full disk) removes its
        # temporary file (only a killed process can leave one behind).
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(staging, "wb") as handle:
                handle.write(buffer.getvalue())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, path)
        except BaseException:
            staging.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> Codebook:
        """Read a file written by ``save``; a different format version is an error."""
        with np.load(Path(path), allow_pickle=False) as data:
            version = int(data["format_version"]) if "format_version" in data.files else None
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: codebook format version {version}, expected {FORMAT_VERSION}")
            layers = tuple((data[f"W{i}"], data[f"b{i}"]) for i in range(int(data["num_layers"])))
            return cls(encoder_weights=layers, codebooks=data["codebooks"], input_dim=int(data["input_dim"]))

    # ---- helpers ----------------------------------------------------------------------

    def _checked(self, vectors: np.ndarray) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"vectors: expected a 2-D array (N, {self.input_dim}), got shape {x.shape}")
        if x.shape[1] != self.input_dim:
            raise ValueError(f"vectors: wrong dimension {x.shape[1]}, the codebook expects {self.input_dim}")
        bad = ~np.isfinite(x).all(axis=1)  # (N,)
        if bad.any():
            raise ValueError(f"vectors: {int(bad.sum())} row(s) contain NaN or infinite values "
                             f"(first at row {int(np.argmax(bad))})")
        return x

    def _encode(self, x: np.ndarray) -> np.ndarray:
        h = x
        last = len(self.encoder_weights) - 1
        for i, (w, b) in enumerate(self.encoder_weights):
            # Written as matmul-then-add (not a fused form) to match the torch float64 path.
            h = h @ w.T + b  # (N, out)
            if i < last:
                h = np.maximum(h, 0.0)
        return h


def _rebuild(encoder_weights: tuple[tuple[np.ndarray, np.ndarray], ...], codebooks: np.ndarray,
             input_dim: int) -> Codebook:
    return Codebook(encoder_weights=encoder_weights, codebooks=codebooks, input_dim=input_dim)


def _frozen_float64(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.float64, order="C", copy=True)
    out.setflags(write=False)
    return out


def dedup_digits(codes: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """(N, L) codes, (N,) unique item ids → (N,) int64 collision digit.

    Items sharing the same full code tuple get 0, 1, 2, ... in item_id order, so (codes, digit)
    is unique per item and does not depend on the order of the input rows (TIGER appends such a
    digit to make Semantic IDs unique).
    """
    codes = np.asarray(codes)
    item_ids = np.asarray(item_ids)
    if codes.ndim != 2:
        raise ValueError(f"codes: expected a 2-D array (N, L), got shape {codes.shape}")
    if item_ids.shape != (codes.shape[0],):
        raise ValueError(f"item_ids: expected shape ({codes.shape[0]},), got {item_ids.shape}")
    n = codes.shape[0]
    duplicates = n - len(np.unique(item_ids))
    if duplicates:
        raise ValueError(f"item_ids: must be unique, found {duplicates} duplicate(s)")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Sort by (code tuple, item_id); np.lexsort takes its primary key last.
    order = np.lexsort((item_ids, *(codes[:, level] for level in reversed(range(codes.shape[1])))))
    sorted_codes = codes[order]  # (N, L)
    same_tuple = (sorted_codes[1:] == sorted_codes[:-1]).all(axis=1)  # (N-1,) row i+1 continues row i's run
    run_start = np.maximum.accumulate(np.where(np.r_[True, ~same_tuple], np.arange(n), 0))  # (N,)
    digits = np.empty(n, dtype=np.int64)
    digits[order] = np.arange(n) - run_start
    return digits


def sid_metrics(codes: np.ndarray, codebook_size: int) -> dict[str, float]:
    """Quality of an (N, L) code matrix, as a flat dict of floats (ready for metric logging).

    usage_l{l}: distinct codes used at level l / K.
    perplexity_l{l}: exp(entropy) of the level's code frequencies, in [1, K].
    collision_rate: share of items whose full L-tuple is shared with at least one other item.
    items_per_prefix_mean_l{l} / _max_l{l}: items per distinct prefix codes[:, :l].
    num_items, distinct_tuples: N and the number of distinct full tuples.
    Levels are numbered 1..L.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise ValueError(f"codes: expected a non-empty 2-D array (N, L), got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes: expected integers, got dtype {codes.dtype}")
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise ValueError(f"codes: values must lie in [0, {codebook_size}), got [{codes.min()}, {codes.max()}]")
    n, levels = codes.shape
    metrics: dict[str, float] = {"num_items": float(n)}
    for level in range(levels):
        counts = np.bincount(codes[:, level], minlength=codebook_size)  # (K,)
        p = counts[counts > 0] / n
        metrics[f"usage_l{level + 1}"] = float((counts > 0).sum() / codebook_size)
        metrics[f"perplexity_l{level + 1}"] = float(np.exp(-(p * np.log(p)).sum()))
    for level in range(1, levels + 1):
        _, inverse, per_prefix = np.unique(codes[:, :level], axis=0, return_inverse=True, return_counts=True)
        metrics[f"items_per_prefix_mean_l{level}"] = float(per_prefix.mean())
        metrics[f"items_per_prefix_max_l{level}"] = float(per_prefix.max())
    # After the loop the prefix is the full tuple.
    tuple_sizes = per_prefix[inverse.reshape(-1)]  # (N,) items sharing each row's full tuple
    metrics["collision_rate"] = float((tuple_sizes > 1).mean())
    metrics["distinct_tuples"] = float(len(per_prefix))
    return metrics
