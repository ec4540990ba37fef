"""Semantic IDs: the text encoder, the RQ-VAE, the exported codebook and its store, SID reports."""
