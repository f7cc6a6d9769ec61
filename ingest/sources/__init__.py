"""Webhook sources: one module per provider (signature scheme + normalization)."""
