"""Training: the feed (Petastorm or plain Arrow), the loop, the optimiser and the equal-budget search."""
