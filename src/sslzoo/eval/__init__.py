"""Evaluation of frozen and fine-tuned ViTs: features, kNN, linear probe, fine-tuning, and the protocols end to end."""
