"""Local stand-ins of the downstream APIs, for the demo, development and tests — never production.

``create_app()`` serves all of them in one process, each under its own prefix (``/quickbooks`` …), so a consumer's
``*_BASE_URL`` points at ``http://127.0.0.1:8100/<name>``. Each stand-in validates what hookbus sends the way the
real API does, enforces its idempotency rules, answers 429 with ``Retry-After`` on demand
(``POST /<name>/_sandbox/faults``) and lists what was created (``GET /<name>/_sandbox/objects``).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from . import email, google_calendar, hubspot, quickbooks, supplier, twilio

#: name → factory of the stand-in's Starlette app. Add a stand-in with one line here.
SANDBOXES: dict[str, Callable[[], Starlette]] = {
    "quickbooks": quickbooks.create_app,
    "hubspot": hubspot.create_app,
    "supplier": supplier.create_app,
    "email": email.create_app,
    "google-calendar": google_calendar.create_app,
    "twilio": twilio.create_app,
}


def create_app(names: list[str] | None = None) -> Starlette:
    """Every stand-in (or those in ``names``) mounted at ``/<name>``, plus ``GET /healthz``."""
    chosen = list(SANDBOXES) if names is None else names

    async def healthz(request: object) -> JSONResponse:
        return JSONResponse({"status": "ok", "sandboxes": chosen})

    routes: list[Route | Mount] = [Route("/healthz", healthz)]
    routes += [Mount(f"/{name}", app=SANDBOXES[name]()) for name in chosen]
    return Starlette(routes=routes)
