"""Implicit-feedback ALS in one numpy process: the single-process reference of collab-vectors' fit.

The same algorithm Spark's `ALS(implicitPrefs=True)` runs (Hu, Koren and Volinsky 2008, with
Spark's regularisation scaled by each row's count): confidence 1 + alpha·strength, preference 1,
and per half-iteration one exact least-squares solve per user (then per item) against the other
side's factors. Each row's normal equations are one BLAS product over its own pairs; the solves of
all rows run as one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pairs:
    """Distinct (row, column) pairs with how often each occurred, ordered by row."""

    rows: np.ndarray  # (P,) int64, ascending
    columns: np.ndarray  # (P,) int64
    strength: np.ndarray  # (P,) float32
    row_count: int
    column_count: int

    @classmethod
    def counted(cls, rows: np.ndarray, columns: np.ndarray) -> "Pairs":
        """(n,) dense row and column indices of n occurrences → their distinct pairs and counts."""
        row_count = int(rows.max()) + 1 if len(rows) else 0
        column_count = int(columns.max()) + 1 if len(columns) else 0
        keys, counts = np.unique(rows * column_count + columns, return_counts=True)  # ascending: by row
        return cls(rows=keys // max(column_count, 1), columns=keys % max(column_count, 1),
                   strength=counts.astype(np.float32), row_count=row_count, column_count=column_count)

    def transposed(self) -> "Pairs":
        order = np.argsort(self.columns, kind="stable")
        return Pairs(rows=self.columns[order], columns=self.rows[order], strength=self.strength[order],
                     row_count=self.column_count, column_count=self.row_count)

    def starts(self) -> np.ndarray:
        """(row_count + 1,) first pair of each row."""
        return np.searchsorted(self.rows, np.arange(self.row_count + 1))


def implicit_als(pairs: Pairs, *, rank: int, iterations: int, reg: float, alpha: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(row_count, rank) row factors and (column_count, rank) column factors."""
    rng = np.random.default_rng(seed)
    row_factors = (rng.standard_normal((pairs.row_count, rank)) / np.sqrt(rank)).astype(np.float32)
    column_factors = (rng.standard_normal((pairs.column_count, rank)) / np.sqrt(rank)).astype(np.float32)
    by_column = pairs.transposed()
    for _ in range(iterations):
        row_factors = solve_side(pairs, column_factors, reg=reg, alpha=alpha)
        column_factors = solve_side(by_column, row_factors, reg=reg, alpha=alpha)
    return row_factors, column_factors


def solve_side(pairs: Pairs, other: np.ndarray, *, reg: float, alpha: float) -> np.ndarray:
    """Each row's factors given the other side's: (G + Fᵀ diag(c−1) F + reg·n I) x = Fᵀ c, with
    F the other side's factors of the row's n pairs and c = 1 + alpha·strength."""
    rank = other.shape[1]
    gram = other.T.astype(np.float64) @ other  # (r, r): every column at confidence 1
    starts = pairs.starts()
    lhs = np.empty((pairs.row_count, rank, rank))
    rhs = np.zeros((pairs.row_count, rank))
    extra = alpha * pairs.strength  # (P,) c − 1
    for row in range(pairs.row_count):
        lo, hi = starts[row], starts[row + 1]
        factors = other[pairs.columns[lo:hi]]  # (n, r)
        lhs[row] = gram + (factors.T * extra[lo:hi]) @ factors
        lhs[row].flat[::rank + 1] += reg * (hi - lo)
        rhs[row] = factors.T @ (1.0 + extra[lo:hi])
    return np.linalg.solve(lhs, rhs[..., None])[..., 0].astype(np.float32)  # (rows, r, r) x (rows, r, 1)
