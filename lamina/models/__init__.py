"""Model building blocks and architectures (nothing here knows about training)."""
