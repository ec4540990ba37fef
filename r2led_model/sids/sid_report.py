"""What a person needs to judge a set of Semantic IDs: usage, collisions, prefix sizes, example
texts per prefix, agreement with a known taxonomy (NMI), and plots. numpy + matplotlib only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from r2led_model.sids.codebook import sid_metrics


def normalized_mutual_information(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """NMI with the arithmetic-mean normaliser (as scikit-learn's default): 1 = same partition."""
    _, a = np.unique(labels_a, return_inverse=True)
    _, b = np.unique(labels_b, return_inverse=True)
    n = len(a)
    if n == 0:
        return 0.0
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= n
    pa, pb = joint.sum(axis=1), joint.sum(axis=0)
    nonzero = joint > 0
    mutual = float(np.sum(joint[nonzero] * np.log(joint[nonzero] / np.outer(pa, pb)[nonzero])))
    entropy = lambda p: float(-np.sum(p[p > 0] * np.log(p[p > 0])))  # noqa: E731
    h_a, h_b = entropy(pa), entropy(pb)
    if h_a == 0 and h_b == 0:
        return 1.0
    return mutual / ((h_a + h_b) / 2) if (h_a + h_b) > 0 else 0.0


def prefix_keys(codes: np.ndarray, level: int) -> np.ndarray:
    """(N,) one integer per distinct prefix of length `level` of (N, L) codes."""
    _, keys = np.unique(codes[:, :level], axis=0, return_inverse=True)
    return keys.ravel()


@dataclass
class SidReport:
    codebook_version: str
    levels: int
    codebook_size: int
    metrics: dict[str, float]
    collision_rate_after_dedup: float
    # level → [(prefix, item count, example item ids)], the biggest prefixes first
    examples: dict[int, list[tuple[list[int], int, list[int]]]] = field(default_factory=dict)
    nmi: dict[str, float] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)

    def example_item_ids(self) -> list[int]:
        return sorted({i for rows in self.examples.values() for _, _, ids in rows for i in ids})

    def _texts(self, ids: list[int]) -> list[str]:
        return [self.texts.get(i) or f"item {i}" for i in ids]

    def to_dict(self) -> dict:
        return {
            "codebook_version": self.codebook_version, "levels": self.levels, "codebook_size": self.codebook_size,
            "metrics": self.metrics, "collision_rate_after_dedup": self.collision_rate_after_dedup,
            "nmi": self.nmi,
            "examples": {str(level): [{"prefix": p, "items": n, "item_ids": ids, "texts": self._texts(ids)}
                                      for p, n, ids in rows]
                         for level, rows in self.examples.items()},
        }

    def summary(self) -> str:
        m = self.metrics
        lines = [f"SIDs from codebook {self.codebook_version}: {int(m['num_items']):,} items, "
                 f"L={self.levels}, K={self.codebook_size}",
                 f"  collision rate: {m['collision_rate']:.2%} before dedup, {self.collision_rate_after_dedup:.2%} after",
                 f"  {'level':>5} {'usage':>7} {'perplexity':>11} {'items/prefix mean':>18} {'max':>6}"]
        for level in range(1, self.levels + 1):
            lines.append(f"  {level:>5} {m[f'usage_l{level}']:>7.1%} {m[f'perplexity_l{level}']:>11.1f} "
                         f"{m[f'items_per_prefix_mean_l{level}']:>18.2f} {int(m[f'items_per_prefix_max_l{level}']):>6}")
        for name, value in self.nmi.items():
            lines.append(f"  NMI {name}: {value:.3f}")
        for level, rows in self.examples.items():
            lines.append(f"  biggest level-{level} prefixes, with example items:")
            for prefix, count, ids in rows:
                lines.append(f"    {prefix} ({count} items): " + " | ".join(t[:60] for t in self._texts(ids)))
        return "\n".join(lines)


def build_report(*, codebook_version: str, codebook_size: int, item_ids: np.ndarray, semantic_codes: np.ndarray,
                 full_codes: np.ndarray, example_prefixes: int = 5, examples_per_prefix: int = 4,
                 truth: Mapping[str, np.ndarray] | None = None) -> SidReport:
    """`semantic_codes` (N, L) and `full_codes` (N, L or L+1) aligned with `item_ids` (N,); `truth`
    maps a name to (N,) known labels. Fill `report.texts` for the example ids to show texts."""
    levels = semantic_codes.shape[1]
    metrics = sid_metrics(semantic_codes, codebook_size)
    after = sid_metrics(full_codes, max(codebook_size, int(full_codes.max(initial=0)) + 1))["collision_rate"]
    examples: dict[int, list[tuple[list[int], int, list[int]]]] = {}
    for level in (1, min(2, levels)):
        keys = prefix_keys(semantic_codes, level)
        counts = np.bincount(keys)
        rows = []
        for key in np.argsort(-counts, kind="stable")[:example_prefixes]:
            members = np.sort(item_ids[keys == key])[:examples_per_prefix]
            prefix = semantic_codes[keys == key][0, :level].tolist()
            rows.append((prefix, int(counts[key]), [int(i) for i in members]))
        examples[level] = rows
    nmi = {}
    for name, labels in (truth or {}).items():
        for level in range(1, levels + 1):
            nmi[f"{name} vs level-{level} prefix"] = normalized_mutual_information(labels, prefix_keys(semantic_codes, level))
    return SidReport(codebook_version=codebook_version, levels=levels, codebook_size=codebook_size, metrics=metrics,
                     collision_rate_after_dedup=float(after), examples=examples, nmi=nmi)


def plot_usage(semantic_codes: np.ndarray, codebook_size: int):
    """One bar chart per level: items per code, sorted (a flat profile = codes used evenly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = semantic_codes.shape[1]
    figure, axes = plt.subplots(1, levels, figsize=(4 * levels, 3), squeeze=False)
    for level in range(levels):
        counts = np.sort(np.bincount(semantic_codes[:, level], minlength=codebook_size))[::-1]
        axes[0, level].bar(np.arange(codebook_size), counts, width=1.0)
        axes[0, level].set_title(f"level {level + 1}: items per code")
        axes[0, level].set_xlabel("code (sorted by use)")
    figure.tight_layout()
    return figure


def plot_prefix_sizes(semantic_codes: np.ndarray):
    """Histogram of items per prefix at each level (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3))
    for level in range(1, semantic_codes.shape[1] + 1):
        sizes = np.bincount(prefix_keys(semantic_codes, level))
        axis.hist(sizes, bins=30, histtype="step", label=f"level {level}", log=True)
    axis.set_xlabel("items per prefix")
    axis.legend()
    figure.tight_layout()
    return figure
