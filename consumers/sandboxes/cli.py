"""``hookbus sandbox NAME``: run a local stand-in of a downstream API."""

from __future__ import annotations

import click
import uvicorn


@click.command()
@click.argument("name", type=click.Choice(["quickbooks"]))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=int)
@click.option("--access-token", default="sandbox-token", show_default=True, help="Bearer token the sandbox accepts.")
def sandbox(name: str, host: str, port: int, access_token: str) -> None:
    """Serve a local stand-in of the downstream API NAME (for the demo, development and tests; not the real API)."""
    from .quickbooks import create_app

    uvicorn.run(create_app(access_token=access_token), host=host, port=port, log_level="warning")
