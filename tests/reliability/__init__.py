"""Reliability suite: crafted files, broken downloads, crashes and odd data (see docs/security.md)."""
