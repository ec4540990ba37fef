"""RQ-VAE that turns item vectors into Semantic IDs (pure torch; trained on the driver).

Model: MLP encoder x (D) → z (d); L residual codebooks of K codes quantise z level by level
(residual quantisation, Lee et al. 2022 "Autoregressive Image Generation using Residual
Quantization"): level l picks the code e_l nearest to the residual r_l (r_0 = z,
r_{l+1} = r_l − e_l) and z_q = Σ_l e_l; an MLP decoder maps z_q back to x̂. The L chosen codes
are the item's Semantic ID (TIGER, Rajput et al. 2023 "Recommender Systems with Generative
Retrieval").

Loss (``rqvae_loss``): ||x − x̂||² + Σ_l ||sg[r_l] − e_l||² + β Σ_l ||r_l − sg[e_l]||², with the
straight-through estimator z + sg[z_q − z] carrying the reconstruction gradient to the encoder.
Codebooks start from k-means on the encoder's outputs; codes left unused in an epoch are
re-seeded from live residuals (dead-code reset), which keeps codebook usage high.

The trained model is frozen into a numpy ``Codebook`` (``export_codebook``) for Spark workers;
``RQVAE.assign_codes`` computes in float64 exactly as ``Codebook.assign_codes`` does.
"""

from __future__ import annotations

import logging
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from r2led_model.config import CodebookConfig
from r2led_model.sids.codebook import ASSIGN_CHUNK_ROWS, Codebook

log = logging.getLogger(__name__)

# Encoder outputs used for k-means initialisation and dead-code reset: all rows, or a seeded
# sample of this many when there are more (k-means cost grows with rows × K).
KMEANS_SAMPLE_ROWS = 20_000
# Rows per forward pass when evaluating (reconstruction_mse).
EVAL_BATCH_ROWS = 8192

EpochCallback = Callable[[int, dict[str, float]], None]


class QuantizerOutput(NamedTuple):
    """What ``ResidualQuantizer.forward`` returns for a batch of B latents of width d."""

    z_q: Tensor  # (B, d) straight-through: the value of Σ_l e_l, the gradient of z
    codes: Tensor  # (B, L) int64
    residuals: Tensor  # (B, L, d) the input r_l of each level; r_0 = z
    codebook_loss: Tensor  # () Σ_l mean ||sg[r_l] − e_l||², trains the codebooks
    commitment_loss: Tensor  # () Σ_l mean ||r_l − sg[e_l]||², trains the encoder (β applied by rqvae_loss)


class RQVAEOutput(NamedTuple):
    """What ``RQVAE.forward`` returns for a batch of B item vectors of width D."""

    x_hat: Tensor  # (B, D) reconstruction
    z: Tensor  # (B, d) encoder output
    z_q: Tensor  # (B, d) quantised latent (straight-through)
    codes: Tensor  # (B, L) int64
    codebook_loss: Tensor  # ()
    commitment_loss: Tensor  # ()


def nearest_code(residual: Tensor, table: Tensor) -> Tensor:
    """(n, d) residuals, (K, d) codes → (n,) int64 index of the nearest code; ties → lowest index.

    ||r − e||² = ||r||² − 2 r·e + ||e||²; ||r||² is the same for every code of a row, so it is
    left out (it cannot change the argmin). Same formula as ``Codebook.assign_codes``.
    """
    scores = (table * table).sum(dim=1)[None, :] - 2.0 * (residual @ table.T)  # (n, K)
    return torch.argmin(scores, dim=1)  # torch returns the first minimum


def kmeans(points: Tensor, *, clusters: int, iterations: int, generator: torch.Generator) -> Tensor:
    """(n, d) points → (clusters, d) centres, clusters ≤ n.

    k-means++ seeding (Arthur & Vassilvitskii 2007) then up to ``iterations`` Lloyd steps, in
    float64; every random choice comes from ``generator``, so the result is deterministic. An
    empty cluster keeps its centre (the dead-code reset re-seeds it during training).
    """
    n, dim = points.shape
    if not 1 <= clusters <= n:
        raise ValueError(f"kmeans: clusters must be in [1, {n}] for {n} points, got {clusters}")
    x = points.detach().to(torch.float64)
    centres = torch.empty(clusters, dim, dtype=torch.float64)
    centres[0] = x[int(torch.randint(n, (1,), generator=generator))]
    closest = ((x - centres[0]) ** 2).sum(dim=1)  # (n,) squared distance to the nearest chosen centre
    for c in range(1, clusters):
        total = closest.sum()
        if total > 0:
            pick = int(torch.multinomial(closest / total, 1, generator=generator))
        else:  # every point already coincides with a centre (duplicates): pick uniformly
            pick = int(torch.randint(n, (1,), generator=generator))
        centres[c] = x[pick]
        closest = torch.minimum(closest, ((x - centres[c]) ** 2).sum(dim=1))
    assignment: Tensor | None = None
    for _ in range(iterations):
        new_assignment = nearest_code(x, centres)  # (n,)
        if assignment is not None and torch.equal(new_assignment, assignment):
            break  # converged
        assignment = new_assignment
        sums = torch.zeros_like(centres).index_add_(0, assignment, x)  # (clusters, d)
        counts = torch.bincount(assignment, minlength=clusters)  # (clusters,)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None].to(torch.float64)
    return centres.to(points.dtype)


class ResidualQuantizer(nn.Module):
    """L codebooks of K codes of width d (a parameter of shape (L, K, d)), used residually.

    ``usage`` (L, K) counts how often each code was chosen in training-mode forward passes
    since the last ``reset_usage``/``reset_dead_codes``; it is bookkeeping, not state_dict.
    """

    def __init__(self, *, levels: int, codebook_size: int, dim: int) -> None:
        super().__init__()
        if levels < 1 or codebook_size < 1 or dim < 1:
            raise ValueError(f"levels, codebook_size and dim must be >= 1, got {levels}, {codebook_size}, {dim}")
        self.levels = levels
        self.codebook_size = codebook_size
        self.dim = dim
        # Small random codes until init_from replaces them with k-means centres.
        self.codebooks = nn.Parameter(0.01 * torch.randn(levels, codebook_size, dim))  # (L, K, d)
        self.register_buffer("usage", torch.zeros(levels, codebook_size, dtype=torch.int64), persistent=False)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """(B, d) latents → QuantizerOutput (see its fields for shapes)."""
        residual = z
        z_q = torch.zeros_like(z)  # (B, d)
        codebook_loss = z.new_zeros(())
        commitment_loss = z.new_zeros(())
        codes: list[Tensor] = []
        residuals: list[Tensor] = []
        for level in range(self.levels):
            table = self.codebooks[level]  # (K, d)
            with torch.no_grad():
                chosen = nearest_code(residual.detach(), table)  # (B,)
            code = table[chosen]  # (B, d); carries the gradient to the codebook
            codebook_loss = codebook_loss + F.mse_loss(code, residual.detach())
            commitment_loss = commitment_loss + F.mse_loss(residual, code.detach())
            codes.append(chosen)
            residuals.append(residual)
            # Detached so the commitment loss of later levels trains the encoder, not earlier codes.
            residual = residual - code.detach()
            z_q = z_q + code.detach()
        codes_t = torch.stack(codes, dim=1)  # (B, L)
        if self.training:
            self._count(codes_t)
        return QuantizerOutput(
            z_q=z + (z_q - z).detach(),  # straight-through (van den Oord et al. 2017)
            codes=codes_t,
            residuals=torch.stack(residuals, dim=1),  # (B, L, d)
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
        )

    def decode_codes(self, codes: Tensor) -> Tensor:
        """(B, L) int64 codes → (B, d) sum of the chosen code vectors."""
        levels = torch.arange(self.levels, device=codes.device)[None, :]  # (1, L)
        return self.codebooks[levels, codes].sum(dim=1)  # (B, L, d) → (B, d)

    @torch.no_grad()
    def init_from(self, z: Tensor, *, iterations: int, generator: torch.Generator) -> None:
        """Set every codebook by k-means on the (n, d) residuals of ``z``, level by level.

        With K > n only n clusters exist; the remaining codes start on randomly chosen residuals
        (duplicates of data points; the dead-code reset moves unused ones later).
        """
        residual = z.detach().to(self.codebooks.dtype)  # (n, d)
        n = residual.shape[0]
        clusters = min(self.codebook_size, n)
        for level in range(self.levels):
            centres = kmeans(residual, clusters=clusters, iterations=iterations, generator=generator)  # (k, d)
            if clusters < self.codebook_size:
                extra = torch.randint(n, (self.codebook_size - clusters,), generator=generator)
                centres = torch.cat([centres, residual[extra]])  # (K, d)
            self.codebooks[level].copy_(centres)
            residual = residual - centres[nearest_code(residual, centres)]  # (n, d)
        self.reset_usage()

    def reset_usage(self) -> None:
        self.usage.zero_()

    @torch.no_grad()
    def reset_dead_codes(self, z: Tensor, *, min_uses: int, generator: torch.Generator) -> Tensor:
        """Re-seed codes used fewer than ``min_uses`` times since the last reset; returns (L,) counts.

        Level by level: dead codes of level l move onto randomly chosen (distinct where possible)
        level-l residuals of the (n, d) latents ``z``, computed with the already updated lower
        levels. Then the usage counts start again from zero.
        """
        residual = z.detach().to(self.codebooks.dtype)  # (n, d)
        n = residual.shape[0]
        reset = torch.zeros(self.levels, dtype=torch.int64)
        for level in range(self.levels):
            dead = torch.nonzero(self.usage[level] < min_uses).flatten()  # (m,)
            if len(dead):
                if len(dead) <= n:
                    picks = torch.randperm(n, generator=generator)[: len(dead)]
                else:
                    picks = torch.randint(n, (len(dead),), generator=generator)
                self.codebooks[level, dead] = residual[picks]
                reset[level] = len(dead)
            table = self.codebooks[level]  # (K, d)
            residual = residual - table[nearest_code(residual, table)]  # (n, d)
        self.reset_usage()
        return reset

    def _count(self, codes: Tensor) -> None:
        with torch.no_grad():
            offsets = torch.arange(self.levels, device=codes.device)[None, :] * self.codebook_size  # (1, L)
            flat = (codes + offsets).flatten()  # (B * L,) index into the flattened (L, K) table
            counts = torch.bincount(flat, minlength=self.levels * self.codebook_size)
            self.usage += counts.view(self.levels, self.codebook_size)  # (L, K)


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them and none at either end."""
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """MLP encoder (D → hidden... → d), residual quantizer (L × K × d), MLP decoder (d → ... → D)."""

    def __init__(self, *, input_dim: int, latent_dim: int, hidden_dims: Sequence[int], levels: int,
                 codebook_size: int) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.encoder = _mlp([input_dim, *hidden_dims, latent_dim])
        self.decoder = _mlp([latent_dim, *reversed(tuple(hidden_dims)), input_dim])
        self.quantizer = ResidualQuantizer(levels=levels, codebook_size=codebook_size, dim=latent_dim)

    def forward(self, x: Tensor) -> RQVAEOutput:
        """(B, D) item vectors → RQVAEOutput (see its fields for shapes)."""
        z = self.encoder(x)  # (B, d)
        quantized = self.quantizer(z)
        return RQVAEOutput(
            x_hat=self.decoder(quantized.z_q),
            z=z,
            z_q=quantized.z_q,
            codes=quantized.codes,
            codebook_loss=quantized.codebook_loss,
            commitment_loss=quantized.commitment_loss,
        )

    @torch.no_grad()
    def assign_codes(self, x: Tensor) -> Tensor:
        """(N, D) item vectors → (N, L) int64 codes, computed in float64.

        The same computation as ``Codebook.assign_codes`` (float64 copies of the weights, the same
        row blocks, matmul-then-add, the same distance formula), so both give identical codes.
        """
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"x: expected shape (N, {self.input_dim}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"x: {int((~torch.isfinite(x)).any(dim=1).sum())} row(s) contain NaN or infinite values")
        layers = [(m.weight.detach().double(), m.bias.detach().double()) for m in self.encoder
                  if isinstance(m, nn.Linear)]
        tables = self.quantizer.codebooks.detach().double()  # (L, K, d)
        codes = torch.empty(x.shape[0], self.quantizer.levels, dtype=torch.int64)
        for start in range(0, x.shape[0], ASSIGN_CHUNK_ROWS):
            residual = x[start:start + ASSIGN_CHUNK_ROWS].detach().cpu().double()  # (n, D)
            for i, (w, b) in enumerate(layers):
                residual = residual @ w.T + b  # (n, out)
                if i < len(layers) - 1:
                    residual = torch.clamp_min(residual, 0.0)
            for level in range(self.quantizer.levels):
                chosen = nearest_code(residual, tables[level])  # (n,)
                codes[start:start + len(chosen), level] = chosen
                residual = residual - tables[level][chosen]  # (n, d)
        return codes


def rqvae_loss(out: RQVAEOutput, x: Tensor, *, beta: float) -> tuple[Tensor, dict[str, float]]:
    """Total loss = MSE(x̂, x) + codebook loss + β · commitment loss; parts as floats for logging."""
    reconstruction = F.mse_loss(out.x_hat, x)
    total = reconstruction + out.codebook_loss + beta * out.commitment_loss
    parts = {
        "loss": float(total.detach()),
        "reconstruction": float(reconstruction.detach()),
        "codebook": float(out.codebook_loss.detach()),
        "commitment": float(out.commitment_loss.detach()),
    }
    return total, parts


def code_usage(counts: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(L, K) code counts → (usage (L,), perplexity (L,)).

    usage: share of the K codes used at least once; perplexity: exp(entropy) of the code
    frequencies, 1 when one code takes everything, K when all are used equally (0 if no counts).
    """
    counts = counts.detach().to(torch.float64)
    totals = counts.sum(dim=1, keepdim=True)  # (L, 1)
    p = counts / totals.clamp_min(1.0)  # (L, K)
    entropy = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(dim=1)  # (L,)
    perplexity = torch.where(totals[:, 0] > 0, torch.exp(entropy), torch.zeros_like(entropy))
    usage = (counts > 0).to(torch.float64).mean(dim=1)
    return usage.numpy(), perplexity.numpy()


def train_rqvae(vectors: np.ndarray, config: CodebookConfig,
                on_epoch: EpochCallback | None = None) -> tuple[RQVAE, list[dict[str, float]]]:
    """Train an RQ-VAE on (N, D) item vectors; returns the model (eval mode) and per-epoch metrics.

    Deterministic on CPU: the weights come from ``config.seed`` (drawn inside a forked RNG, so
    the global torch RNG is left as it was) and every other random choice (sample, k-means,
    shuffling, dead-code reset) from one ``torch.Generator`` seeded with it.

    Each epoch's metrics (also passed to ``on_epoch(epoch, metrics)``): epoch, loss,
    reconstruction, codebook, commitment (row-weighted means over the epoch's batches),
    usage_l{l} and perplexity_l{l} (codes chosen during the epoch, levels 1..L) and
    dead_codes_l{l} (codes re-seeded at the end of the epoch).
    """
    x_np = np.asarray(vectors)
    if x_np.ndim != 2 or x_np.shape[0] == 0 or x_np.shape[1] == 0:
        raise ValueError(f"vectors: expected a non-empty 2-D array (N, D), got shape {x_np.shape}")
    bad = ~np.isfinite(x_np).all(axis=1)
    if bad.any():
        raise ValueError(f"vectors: {int(bad.sum())} row(s) contain NaN or infinite values")
    x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32))  # (N, D)
    n, input_dim = x.shape
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = RQVAE(input_dim=input_dim, latent_dim=config.latent_dim, hidden_dims=config.hidden_dims,
                      levels=config.levels, codebook_size=config.codebook_size)
    sample = x if n <= KMEANS_SAMPLE_ROWS else x[torch.randperm(n, generator=generator)[:KMEANS_SAMPLE_ROWS]]

    model.eval()
    with torch.no_grad():
        model.quantizer.init_from(model.encoder(sample), iterations=config.kmeans_iterations, generator=generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        model.quantizer.reset_usage()
        sums = dict.fromkeys(("loss", "reconstruction", "codebook", "commitment"), 0.0)
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            batch = x[order[start:start + config.batch_size]]  # (b, D)
            total, parts = rqvae_loss(model(batch), batch, beta=config.beta)
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            optimiser.step()
            for key in sums:
                sums[key] += parts[key] * len(batch)
        metrics: dict[str, float] = {"epoch": float(epoch), **{key: value / n for key, value in sums.items()}}
        usage, perplexity = code_usage(model.quantizer.usage)
        model.eval()
        with torch.no_grad():
            # A dead code's Adam moments have decayed while it got no gradient, so the re-seeded
            # code is not pushed away by stale momentum; the optimiser state is left alone.
            reset = model.quantizer.reset_dead_codes(model.encoder(sample), min_uses=config.dead_code_min_uses,
                                                     generator=generator)
        for level in range(config.levels):
            metrics[f"usage_l{level + 1}"] = float(usage[level])
            metrics[f"perplexity_l{level + 1}"] = float(perplexity[level])
            metrics[f"dead_codes_l{level + 1}"] = float(reset[level])
        history.append(metrics)
        log.info("rqvae epoch %d/%d loss=%.5f reconstruction=%.5f usage=%s dead=%s", epoch, config.epochs,
                 metrics["loss"], metrics["reconstruction"], np.round(usage, 3).tolist(), reset.tolist())
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    model.eval()
    return model, history


@torch.no_grad()
def reconstruction_mse(model: RQVAE, vectors: np.ndarray) -> float:
    """Mean squared error per element between (N, D) vectors and their reconstructions x̂."""
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))  # (N, D)
    was_training = model.training
    model.eval()
    squared = 0.0
    for start in range(0, x.shape[0], EVAL_BATCH_ROWS):
        batch = x[start:start + EVAL_BATCH_ROWS]  # (b, D)
        squared += float(((model(batch).x_hat - batch) ** 2).to(torch.float64).sum())
    model.train(was_training)
    return squared / max(x.numel(), 1)


def export_codebook(model: RQVAE) -> Codebook:
    """Freeze the encoder and codebooks into the numpy ``Codebook`` (float64 copies)."""
    layers = tuple((m.weight.detach().cpu().double().numpy(), m.bias.detach().cpu().double().numpy())
                   for m in model.encoder if isinstance(m, nn.Linear))
    return Codebook(encoder_weights=layers, codebooks=model.quantizer.codebooks.detach().cpu().double().numpy(),
                    input_dim=model.input_dim)
