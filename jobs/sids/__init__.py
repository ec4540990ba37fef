"""Semantic IDs: item text embeddings, the RQ-VAE codebook, SID assignment and its report."""
