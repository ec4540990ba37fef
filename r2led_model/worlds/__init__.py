"""Synthetic worlds with known click probabilities: the page-view world, its impressions, the oracle and the content-features reference."""
