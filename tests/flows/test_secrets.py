"""Route secrets from Prefect Secret blocks, through the resolver the flows and the CLI inject."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.prefect]


def test_prefect_secret_blocks_resolve_route_references(prefect_harness) -> None:  # type: ignore[no-untyped-def]
    from prefect.blocks.system import Secret

    from flows.secrets import prefect_secret
    from smmdn.alerts.routing import DeliveryConfigError, parse_routes

    Secret(value="json://127.0.0.1:9/ops-from-block").save("smmdn-test-ops-route", overwrite=True)
    spec = {"teams": {"ops": {"urls": ["secret:smmdn-test-ops-route"], }, "gone": {"urls": ["secret:no-such-block"]}}}
    routes = parse_routes(spec, "routes.yaml", secrets=prefect_secret)
    assert routes.resolve("ops#0") == "json://127.0.0.1:9/ops-from-block"
    with pytest.raises(DeliveryConfigError, match="no-such-block"):
        routes.resolve("gone#0")
