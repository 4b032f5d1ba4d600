"""Model: train, evaluate, the monitoring reference, and registering the candidate."""
