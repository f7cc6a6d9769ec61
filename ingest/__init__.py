"""hookbus ingest: the HTTP service that verifies, normalizes and publishes provider webhooks."""
