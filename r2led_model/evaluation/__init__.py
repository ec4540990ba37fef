"""Evaluation: AUC/GAUC/LogLoss, paired bootstrap intervals, segments, plots and R2LED's refinement diagnostics."""
