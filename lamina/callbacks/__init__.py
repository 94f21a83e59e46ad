"""Callbacks: each one concern around the training step (progress, recording, schedules, precision,
tracking, logging). `core` holds the `Callback` base, the event names and the cancel exceptions."""
