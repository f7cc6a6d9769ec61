"""``hookbus sandbox [NAME]``: run the local stand-ins of the downstream APIs."""

from __future__ import annotations

import click
import uvicorn

from . import SANDBOXES, create_app


@click.command()
@click.argument("name", required=False, type=click.Choice(sorted(SANDBOXES)))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
def sandbox(name: str | None, host: str, port: int) -> None:
    """Serve local stand-ins of the downstream APIs (for the demo, development and tests; not the real APIs).

    Without NAME, every stand-in is served under its own prefix (http://HOST:PORT/quickbooks …); with NAME, only
    that one, at the root. Stand-ins accept the bearer token ``sandbox-token``.
    """
    app = SANDBOXES[name]() if name else create_app()
    uvicorn.run(app, host=host, port=port, log_level="warning")
