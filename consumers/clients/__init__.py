"""Async clients for downstream APIs (httpx); each maps HTTP failures to RetryLater / PermanentError."""
