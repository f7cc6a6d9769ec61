"""Local stand-ins for downstream APIs, for tests and the demo (never used in production)."""
