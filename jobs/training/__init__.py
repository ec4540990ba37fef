"""Training: the training set, its Petastorm feed, the trainer job, tuning and the oracle report."""
