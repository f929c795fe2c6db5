"""Seed-VC v1, reimplemented: zero-shot voice and singing-voice conversion."""
