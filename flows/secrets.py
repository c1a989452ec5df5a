"""Where route secrets live: Prefect Secret blocks (``secret:NAME`` in the routes file).

Injected into delivery by the flows and the CLI (``smmdn.alerts.routing.SecretResolver``), so the library
never reaches up into Prefect. Prefect is imported only when a ``secret:`` reference is resolved.
"""

from __future__ import annotations


def prefect_secret(name: str) -> str:
    """The value of the Prefect Secret block ``name`` (raises if it is missing or the API is unreachable)."""
    from prefect.blocks.system import Secret

    return str(Secret.load(name).get())
