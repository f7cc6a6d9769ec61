"""OAuth 2.0 bearer tokens for the downstream API clients: a fixed access token, or the refresh-token grant
(RFC 6749 §6) with the token set shared by every worker process through Redis.

    tokens = RefreshingToken(
        api="quickbooks", token_url=INTUIT_TOKEN_URL, client_id=..., client_secret=..., refresh_token=...,
        redis=resources.redis, key=resources.names.state("accounting", "oauth:quickbooks"),
    )
    http = httpx.AsyncClient(base_url=..., auth=BearerAuth(tokens))

- **The exchange is authlib's.** :class:`RefreshingToken` drives ``authlib.oauth2.client.OAuth2Client`` (the
  framework-neutral core of authlib's clients): it builds the ``grant_type=refresh_token`` request, authenticates the
  client (``client_secret_basic`` for Intuit, ``client_secret_post`` for Google), parses the token response and its
  RFC 6749 §5.2 errors, keeps the old refresh token when the server does not rotate it, and computes ``expires_at``
  (``OAuth2Token``). Only the HTTP POST is ours, through an ``httpx.AsyncClient`` — authlib's ready-made
  ``AsyncOAuth2Client`` now builds on the ``httpx2`` fork, which would not take hookbus' httpx transports
  (rate limiter, metrics, the in-process sandboxes of the tests) and warns when used with httpx.
- **One token set per API account, in Redis** (``key``, JSON: ``access_token``, ``refresh_token``, ``expires_at``,
  ``token_type``, what the token endpoint answered, ``refreshed_at`` and ``seeds``). Every process reads it; the
  access token is renewed ``leeway_s`` (60 s) before ``expires_at``, or at once when the API answers 401.
- **One refresh at a time.** A renewal re-reads Redis first (another process may have refreshed already), then takes
  a short Redis lock (:func:`bus.locks.held`), reads again under it, and only then refreshes — so two processes
  never spend the same refresh token. Intuit rotates refresh tokens: the newest one is written back under the lock
  before anyone else may read it. Coroutines of one process also share one renewal (an ``asyncio.Lock``).
- **The configured refresh token seeds the store.** It is used only when Redis holds nothing *newer*: the stored set
  remembers the SHA-256 fingerprints (``seeds``, the last 10) of the configured refresh tokens it descends from. A
  process started with a refresh token already in ``seeds`` (a restart, a rolling deploy still running the old one)
  uses Redis; a refresh token never seen before (the operator authorized again) replaces the stored set.
- **Failures.** An RFC 6749 §5.2 error from the token endpoint (``invalid_grant``: refresh token revoked or expired;
  ``invalid_client``: wrong client id or secret; …) cannot be fixed by retrying: :class:`OAuthRefreshFailed`
  (a ``PermanentError``, reason ``oauth refresh failed: invalid_grant``), the entry is dead-lettered and an ERROR
  line names the API. 408, 429, 5xx, timeouts and connection errors are ``RetryLater`` (with ``Retry-After``).
- **Secrets stay secret.** Tokens and the client secret are never logged, never in a ``repr`` or an exception
  message. The Redis key holds live tokens: protect Redis (ACLs, TLS) as you protect the environment.

Without ``redis`` the token set lives in the process (one-off commands, unit tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import httpx
import orjson
import redis.asyncio as aioredis
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc6749 import OAuth2Token
from redis.exceptions import RedisError

from bus.errors import PermanentError, RetryLater
from bus.http import InstrumentedTransport
from bus.locks import held
from bus.retry_after import retry_after_delay

__all__ = [
    "BearerAuth",
    "OAuthRefreshFailed",
    "RefreshingToken",
    "StaticToken",
    "TokenSource",
    "fingerprint",
]

log = logging.getLogger("hookbus.oauth")

#: RFC 6749 §5.2 error codes of the token endpoint: the request or the grant is wrong, a retry gets the same answer.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
#: How many fingerprints of configured refresh tokens a stored token set remembers.
MAX_SEEDS = 10


class OAuthRefreshFailed(PermanentError):
    """The token endpoint refused the refresh (``error`` from RFC 6749 §5.2, e.g. ``invalid_grant``: the refresh
    token was revoked, expired or already used). Someone must authorize hookbus again (see docs/oauth.md)."""

    def __init__(self, error: str, *, api: str) -> None:
        super().__init__(f"oauth refresh failed: {error}")
        self.error = error
        self.api = api


class TokenSource(Protocol):
    """Where a client gets its bearer token."""

    #: Whether :meth:`access_token` can get a new token after the API rejected one (401).
    can_refresh: bool

    async def access_token(self, *, rejected: str | None = None) -> str:
        """A current access token; one different from ``rejected`` (the API answered 401 to it) if possible."""
        ...

    async def aclose(self) -> None: ...


class StaticToken:
    """A fixed access token (a sandbox, a short test): never refreshed."""

    can_refresh = False

    def __init__(self, access_token: str) -> None:
        if not access_token:
            raise ValueError("the access token is empty")
        self._access_token = access_token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    async def access_token(self, *, rejected: str | None = None) -> str:
        return self._access_token

    async def aclose(self) -> None:
        return None


class BearerAuth(httpx.Auth):
    """httpx authentication: ``Authorization: Bearer <token>`` from a :class:`TokenSource`.

    On a 401 it gets a new token (a refresh, or the one another process stored) and sends the request once more —
    the request never reached the API's logic, so repeating it is safe; a second 401 is returned to the caller.
    Each attempt passes through the client's transport, so both are rate limited and counted."""

    def __init__(self, tokens: TokenSource) -> None:
        self.tokens = tokens

    def __repr__(self) -> str:
        return f"BearerAuth({self.tokens!r})"

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.tokens.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and self.tokens.can_refresh:
            token = await self.tokens.access_token(rejected=token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("BearerAuth works with httpx.AsyncClient only")


def fingerprint(refresh_token: str) -> str:
    """A short SHA-256 fingerprint of a refresh token (stored in ``seeds`` instead of the token itself)."""
    return hashlib.sha256(refresh_token.encode()).hexdigest()[:16]


class _TokenEndpointError(Exception):
    """The token endpoint answered an RFC 6749 §5.2 error (authlib's ``oauth_error_class`` here: authlib's own
    error class rejects descriptions with some characters)."""

    def __init__(self, error: str | None = None, description: str | None = None, **_: Any) -> None:
        super().__init__(str(error))
        self.error = str(error or "unknown_error")
        self.description = str(description or "")


class _TokenEndpoint(OAuth2Client):
    """authlib's OAuth 2.0 client, sending its token endpoint request through an ``httpx.AsyncClient``.

    ``refresh_token(url, refresh_token=…)`` (authlib) prepares the RFC 6749 §6 request and the client
    authentication and calls :meth:`_refresh_token`, which returns a coroutine here (as authlib's httpx integration
    does)."""

    oauth_error_class = _TokenEndpointError

    def __repr__(self) -> str:
        return "_TokenEndpoint(<redacted>)"

    async def _refresh_token(  # type: ignore[override]
        self,
        url: str,
        refresh_token: str | None = None,
        body: str = "",
        headers: dict[str, str] | None = None,
        auth: Any = None,
        **kwargs: Any,
    ) -> OAuth2Token:
        url, headers, body = auth.prepare("POST", url, dict(headers or {}), body)
        response = await self.session.post(url, content=body.encode(), headers=headers)
        for hook in self.compliance_hook["refresh_token_response"]:
            response = hook(response)
        if response.status_code in (408, 429) or response.status_code >= 500:
            delay = retry_after_delay(response.headers.get("Retry-After"))
            raise RetryLater(f"oauth refresh failed: HTTP {response.status_code}", delay=delay)
        token = self.parse_response_token(response)
        if "refresh_token" not in token:  # RFC 6749 §6: the server may keep the refresh token as it is
            self.token["refresh_token"] = refresh_token
        return self.token


class RefreshingToken:
    """Access tokens from the refresh-token grant, shared through Redis (see the module docstring).

    - ``api``: the downstream API's name, for logs and the token endpoint's metrics (``<api>_oauth``).
    - ``token_url``, ``client_id``, ``client_secret``, ``refresh_token``: the grant; ``auth_method``:
      ``client_secret_basic`` (Intuit) or ``client_secret_post`` (Google); ``scope``: only if the server wants it.
    - ``redis`` and ``key``: where the token set is shared (without ``redis``: in this process only).
    - ``leeway_s``: renew this long before ``expires_at``; ``timeout_s``: for the token endpoint request;
      ``transport``: replaces the network in tests. ``lock_ttl_s``/``lock_wait_s``: the Redis lock around a refresh.
    """

    can_refresh = True

    def __init__(
        self,
        *,
        api: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        auth_method: str = "client_secret_basic",
        scope: str | None = None,
        redis: aioredis.Redis | None = None,
        key: str = "",
        leeway_s: float = 60.0,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        lock_ttl_s: float = 60.0,
        lock_wait_s: float | None = None,
    ) -> None:
        if not (refresh_token and client_id and client_secret and token_url):
            raise ValueError("a refresh token, client id, client secret and token URL are required")
        if redis is not None and not key:
            raise ValueError("a Redis key is required with redis")
        self.api = api
        self.token_url = token_url
        self.key = key
        self._refresh_token = refresh_token
        self._seed = fingerprint(refresh_token)
        self._redis = redis
        self._memory: dict[str, Any] | None = None  # the stored set, without Redis
        self._leeway_s = leeway_s
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._lock_wait_s = lock_wait_s if lock_wait_s is not None else timeout_s + 5.0
        self._token: OAuth2Token | None = None  # this process's copy
        self._unsaved: tuple[str, dict[str, Any]] | None = None  # (refresh token it replaced, new set) if Redis failed
        self._local = asyncio.Lock()
        # The token endpoint is not the API: counted under its own name, not rate limited as the API.
        self._http = httpx.AsyncClient(
            timeout=timeout_s, transport=InstrumentedTransport(f"{api}_oauth", inner=transport)
        )
        self._endpoint = _TokenEndpoint(
            self._http,
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method=auth_method,
            scope=scope,
            token_endpoint=token_url,
        )

    def __repr__(self) -> str:
        return f"RefreshingToken(api={self.api!r}, token_url={self.token_url!r}, key={self.key!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----------------------------------------------------------------------------------------------- public
    async def access_token(self, *, rejected: str | None = None) -> str:
        token = self._token
        if self._unsaved is not None or not self._usable(token, rejected):
            token = await self._renew(rejected)
        assert token is not None
        return str(token["access_token"])

    # ------------------------------------------------------------------------------------------------ inner
    def _usable(self, token: OAuth2Token | None, rejected: str | None) -> bool:
        if not token or not token.get("access_token") or token["access_token"] == rejected:
            return False
        return not token.is_expired(leeway=self._leeway_s)

    async def _renew(self, rejected: str | None) -> OAuth2Token:
        async with self._local:
            if self._unsaved is None:
                if self._usable(self._token, rejected):
                    return self._token  # type: ignore[return-value]  # another coroutine renewed it meanwhile
                current = self._current(await self._read(), quiet=True)
                if self._usable(current, rejected):  # another process refreshed: no lock needed
                    return self._adopt(current)
            async with self._lock():
                stored = await self._read()
                if self._unsaved is not None:
                    stored = await self._save_unsaved(stored)
                current = self._current(stored)
                if self._usable(current, rejected):
                    return self._adopt(current)
                return await self._refresh(current)

    def _adopt(self, token: OAuth2Token) -> OAuth2Token:
        self._token = token
        log.debug("oauth access token taken from the store", extra={"api": self.api})
        return token

    def _current(self, stored: dict[str, Any] | None, *, quiet: bool = False) -> OAuth2Token:
        """The stored set when it descends from the configured refresh token (or says nothing about its seeds),
        else a set holding only the configured refresh token."""
        if stored and stored.get("refresh_token"):
            seeds = stored.get("seeds")
            if not isinstance(seeds, list) or self._seed in seeds:
                return OAuth2Token(dict(stored))
            if not quiet:
                log.warning(
                    "oauth: the configured refresh token is new; it replaces the stored token set",
                    extra={"api": self.api, "key": self.key},
                )
        old = stored.get("seeds") if stored else None
        seeds = [s for s in old if isinstance(s, str)] if isinstance(old, list) else []
        return OAuth2Token({"refresh_token": self._refresh_token, "seeds": [*seeds, self._seed][-MAX_SEEDS:]})

    async def _refresh(self, current: OAuth2Token) -> OAuth2Token:
        old_refresh_token = str(current["refresh_token"])
        try:
            new = await self._endpoint.refresh_token(self.token_url, refresh_token=old_refresh_token)
        except _TokenEndpointError as exc:
            if exc.error in PERMANENT_ERRORS:
                log.error(
                    "oauth refresh failed: authorize hookbus again (docs/oauth.md)",
                    extra={"api": self.api, "oauth_error": exc.error, "description": exc.description[:200]},
                )
                raise OAuthRefreshFailed(exc.error, api=self.api) from exc
            raise RetryLater(f"oauth refresh failed: {exc.error}") from exc
        except httpx.HTTPStatusError as exc:  # an error status without an OAuth error body (a proxy, a wrong URL)
            log.error("oauth refresh failed", extra={"api": self.api, "status": exc.response.status_code})
            raise OAuthRefreshFailed(f"HTTP {exc.response.status_code}", api=self.api) from exc
        except httpx.TransportError as exc:
            raise RetryLater(f"oauth refresh failed: {type(exc).__name__}") from exc
        except ValueError as exc:  # a 2xx that is not a JSON object
            raise RetryLater("oauth refresh failed: the token endpoint answered no JSON object") from exc
        if not new.get("access_token"):
            raise RetryLater("oauth refresh failed: no access_token in the token response")
        document = {
            **{k: v for k, v in new.items() if k != "seeds"},
            "seeds": current.get("seeds") or [self._seed],
            "refreshed_at": int(time.time()),
        }
        token = OAuth2Token(document)
        self._token = token
        rotated = document["refresh_token"] != old_refresh_token
        log.info(
            "oauth access token refreshed",
            extra={
                "api": self.api,
                "expires_in": new.get("expires_in"),
                "refresh_token_rotated": rotated,
                "refresh_token_expires_in": new.get("x_refresh_token_expires_in"),
            },
        )
        try:
            await self._write(document)
        except (RedisError, OSError) as exc:
            # The new refresh token exists only here now: keep it and store it before anything else next time.
            self._unsaved = (old_refresh_token, document)
            log.warning(
                "oauth token refreshed but not stored; will store it on the next use",
                extra={"api": self.api, "error": type(exc).__name__},
            )
        return token

    async def _save_unsaved(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        """Store the set a failed write left behind, unless someone moved on from the token it replaced."""
        assert self._unsaved is not None
        replaced, document = self._unsaved
        if stored is None or stored.get("refresh_token") == replaced:
            await self._write(document)
            stored = document
        self._unsaved = None
        return stored

    @contextlib.asynccontextmanager
    async def _lock(self) -> AsyncIterator[None]:
        if self._redis is None:
            yield
            return
        async with held(self._redis, f"{self.key}:lock", ttl_ms=self._lock_ttl_ms, wait_s=self._lock_wait_s):
            yield

    async def _read(self) -> dict[str, Any] | None:
        if self._redis is None:
            return dict(self._memory) if self._memory else None
        raw = await self._redis.get(self.key)
        if raw is None:
            return None
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):
            log.warning("oauth: the stored token set is not a JSON object; ignored", extra={"key": self.key})
            return None
        return document

    async def _write(self, document: dict[str, Any]) -> None:
        if self._redis is None:
            self._memory = dict(document)
            return
        await self._redis.set(self.key, orjson.dumps(document))
