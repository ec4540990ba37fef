"""RQ-VAE: shapes, gradients, k-means init, training, determinism, dead codes, torch ≡ numpy codes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from r2led_model.config import CodebookConfig
from r2led_model.sids.codebook import Codebook
from r2led_model.sids.rqvae import (RQVAE, ResidualQuantizer, RQVAEOutput, export_codebook, kmeans, reconstruction_mse,
                                    rqvae_loss, train_rqvae)

# Tiny and few epochs: the whole file runs in seconds on two busy cores.
TINY = CodebookConfig(levels=3, codebook_size=8, latent_dim=4, hidden_dims=(32,), epochs=8, batch_size=32,
                      learning_rate=3e-3, seed=1, kmeans_iterations=10)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def clustered(n: int, dim: int, seed: int = 0, noise: float = 0.1) -> np.ndarray:
    """(n, dim) float32 points: 4 far-apart centres, 4 nearer sub-centres each, small noise."""
    rng = np.random.default_rng(seed)
    top = 4.0 * rng.normal(size=(4, dim))
    sub = rng.normal(size=(4, 4, dim))
    i, j = rng.integers(0, 4, n), rng.integers(0, 4, n)
    return (top[i] + sub[i, j] + noise * rng.normal(size=(n, dim))).astype(np.float32)


def small_model() -> RQVAE:
    torch.manual_seed(0)
    return RQVAE(input_dim=16, latent_dim=4, hidden_dims=(32,), levels=3, codebook_size=8)


def test_forward_shapes_and_layers():
    model = small_model()
    out = model(torch.randn(10, 16))
    assert out.x_hat.shape == (10, 16) and out.z.shape == (10, 4) and out.z_q.shape == (10, 4)
    assert out.codes.shape == (10, 3) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 8
    assert out.codebook_loss.shape == () and out.commitment_loss.shape == ()
    # Linear → ReLU → Linear on both sides: no activation at either end.
    assert [type(m).__name__ for m in model.encoder] == ["Linear", "ReLU", "Linear"]
    decoder_shapes = [(m.in_features, m.out_features) for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert decoder_shapes == [(4, 32), (32, 16)]
    # The straight-through z_q has the value of the chosen codes' sum.
    torch.testing.assert_close(out.z_q, model.quantizer.decode_codes(out.codes))


def test_each_loss_trains_only_its_own_side():
    model = small_model()
    x = torch.randn(32, 16)
    # Reconstruction reaches the encoder only through the straight-through estimator.
    F.mse_loss(model(x).x_hat, x).backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.quantizer.codebooks.grad is None
    model.zero_grad(set_to_none=True)
    model(x).codebook_loss.backward()  # sg[r]: moves codes, never the encoder
    assert model.quantizer.codebooks.grad.abs().sum() > 0 and model.encoder[0].weight.grad is None
    model.zero_grad(set_to_none=True)
    model(x).commitment_loss.backward()  # sg[e]: moves the encoder, never the codes
    assert model.encoder[0].weight.grad.abs().sum() > 0 and model.quantizer.codebooks.grad is None


def test_rqvae_loss_weights_the_commitment_by_beta():
    x = torch.ones(2, 2)
    out = RQVAEOutput(x_hat=torch.zeros(2, 2), z=torch.zeros(2, 1), z_q=torch.zeros(2, 1),
                      codes=torch.zeros(2, 1, dtype=torch.int64), codebook_loss=torch.tensor(2.0),
                      commitment_loss=torch.tensor(4.0))
    total, parts = rqvae_loss(out, x, beta=0.25)
    # MSE 1 + codebook 2 + 0.25 · 4 = 4.
    assert float(total) == 4.0
    assert parts == {"loss": 4.0, "reconstruction": 1.0, "codebook": 2.0, "commitment": 4.0}


def test_kmeans_finds_planted_centres():
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.tensor(centres[rng.integers(0, 3, 300)] + 0.1 * rng.normal(size=(300, 2)))
    found = kmeans(points, clusters=3, iterations=20, generator=torch.Generator().manual_seed(0))
    # Each planted centre has a found centre within 0.1 (noise 0.1, 100 points per blob).
    nearest = torch.cdist(torch.tensor(centres), found).min(dim=1).values
    assert bool((nearest < 0.1).all())


def test_residual_norms_fall_level_by_level_after_kmeans_init():
    z = torch.from_numpy(clustered(512, 8))
    quantizer = ResidualQuantizer(levels=3, codebook_size=4, dim=8)
    quantizer.init_from(z, iterations=20, generator=torch.Generator().manual_seed(0))
    quantizer.eval()
    out = quantizer(z)
    norms = [float(out.residuals[:, level].norm(dim=1).mean()) for level in range(3)]
    norms.append(float((z - out.z_q).norm(dim=1).mean()))  # what is left after the last level
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    # Same generator seed → same codebooks.
    again = ResidualQuantizer(levels=3, codebook_size=4, dim=8)
    again.init_from(z, iterations=20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.codebooks, quantizer.codebooks)


def test_dead_code_is_reseeded_at_a_live_residual_and_used_again():
    z = torch.from_numpy(clustered(256, 8, seed=2))
    quantizer = ResidualQuantizer(levels=2, codebook_size=4, dim=8)
    quantizer.init_from(z, iterations=20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        quantizer.codebooks[0, 2] = 1000.0  # far from every point: nothing chooses it
    quantizer.train()
    quantizer(z)
    assert int(quantizer.usage[0, 2]) == 0 and int(quantizer.usage[0].sum()) == 256
    reset = quantizer.reset_dead_codes(z, min_uses=1, generator=torch.Generator().manual_seed(5))
    assert int(reset[0]) == 1
    # Level-1 residuals are the latents themselves: the code now sits exactly on one of them.
    assert bool((z == quantizer.codebooks[0, 2].detach()).all(dim=1).any())
    assert int(quantizer.usage.sum()) == 0  # counting starts again
    quantizer(z)
    assert int(quantizer.usage[0, 2]) > 0


def test_training_reduces_loss_and_reports_valid_usage():
    x = clustered(200, 16)
    seen: list[tuple[int, dict[str, float]]] = []
    model, history = train_rqvae(x, TINY, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == list(range(1, TINY.epochs + 1))
    assert [metrics for _, metrics in seen] == history
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["reconstruction"] < history[0]["reconstruction"]
    for metrics in history:
        for level in range(1, TINY.levels + 1):
            assert 0 < metrics[f"usage_l{level}"] <= 1
            assert 1 <= metrics[f"perplexity_l{level}"] <= TINY.codebook_size
    # reconstruction_mse is the per-element MSE of the trained model's x̂.
    with torch.no_grad():
        x_hat = model(torch.from_numpy(x)).x_hat.numpy()
    assert reconstruction_mse(model, x) == pytest.approx(float(((x_hat - x) ** 2).mean()), rel=1e-5)
    assert not model.training


def test_training_is_deterministic_given_the_seed():
    x = clustered(120, 16, seed=4)
    config = replace(TINY, epochs=3)
    first, history_first = train_rqvae(x, config)
    second, history_second = train_rqvae(x, config)
    assert history_first == history_second
    assert first.state_dict().keys() == second.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert torch.equal(first.assign_codes(torch.from_numpy(x)), second.assign_codes(torch.from_numpy(x)))
    other, _ = train_rqvae(x, replace(config, seed=2))
    assert not torch.equal(other.quantizer.codebooks, first.quantizer.codebooks)
    assert not torch.equal(other.encoder[0].weight, first.encoder[0].weight)


def test_more_codes_than_items_still_trains():
    x = clustered(20, 16, seed=5)
    config = replace(TINY, levels=2, codebook_size=32, epochs=2)
    model, history = train_rqvae(x, config)
    # At most 20 of the 32 codes can be chosen by 20 items.
    assert all(0 < metrics["usage_l1"] <= 20 / 32 for metrics in history)
    codes = model.assign_codes(torch.from_numpy(x))
    assert codes.shape == (20, 2) and int(codes.max()) < 32


def test_torch_float64_codes_equal_the_exported_numpy_codes():
    x = clustered(200, 16, seed=6)
    model, _ = train_rqvae(x, replace(TINY, epochs=3))
    book = export_codebook(model)
    assert isinstance(book, Codebook) and book.codebooks.shape == (3, 8, 4) and book.input_dim == 16
    rng = np.random.default_rng(7)
    probe = np.concatenate([x, (3.0 * rng.normal(size=(3000, 16))).astype(np.float32)])  # (3200, 16)
    torch_codes = model.assign_codes(torch.from_numpy(probe)).numpy()
    np.testing.assert_array_equal(torch_codes, book.assign_codes(probe))
    # The float64 encoder agrees with the float32 one up to float32 rounding.
    with torch.no_grad():
        z = model.encoder(torch.from_numpy(probe)).numpy()
    np.testing.assert_allclose(book.encode(probe), z, rtol=1e-4, atol=1e-4)
    # Spread over many codes, so the comparison is not trivially one code everywhere.
    assert len(np.unique(torch_codes[:, 0])) >= 4
