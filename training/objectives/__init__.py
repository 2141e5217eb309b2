"""Losses: InfoNCE with hard or soft targets over all-gathered keys, and DINO's cross-entropy with centering."""
