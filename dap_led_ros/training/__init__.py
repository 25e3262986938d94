"""Training and evaluation: data synthesis, datasets, losses, the loop, metrics. Never imported by the runtime."""
