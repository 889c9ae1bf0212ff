"""Training: data sets, the fit loop, two-stage training, evaluation, pruning."""
