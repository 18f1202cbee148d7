"""Setting an undeclared parameter at run time (``ros2 param set /fed_node alerts.warn_sise 0.2``)
is refused with the name and the closest declared one; rclpy alone answered "Invalid access to
undeclared parameter(s): []". Between real processes: a fed_node (FakeEngine) and a client.
"""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")

from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from test_node_ros import RUN, Client, NodeProcess, client, env, wait_until  # noqa: F401

pytestmark = pytest.mark.ros


def test_an_undeclared_name_set_at_run_time_is_named(
    env: dict[str, str],
    client: Client,
) -> None:
    proc = NodeProcess(env, f"/{RUN}_undeclared", params={"diagnostics.input_timeout": 0.0})
    try:
        proc.wait_ready()
        params = AsyncParameterClient(client.node, f"{proc.namespace}/fed_node")
        assert params.wait_for_services(timeout_sec=20.0)

        def set_params(values: dict[str, float]) -> list:
            future = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
            wait_until(future.done, 10, "set_parameters")
            return future.result().results

        (typo,) = set_params({"alerts.warn_sise": 0.2})
        assert not typo.successful
        assert "unknown parameter alerts.warn_sise - did you mean alerts.warn_size?" in typo.reason
        assert "[]" not in typo.reason
        (far,) = set_params({"zzz_nothing_like_it": 1.0})
        assert not far.successful and "unknown parameter zzz_nothing_like_it" in far.reason
        (good,) = set_params({"alerts.warn_size": 0.2})  # a declared one is still set
        assert good.successful, good.reason
        assert proc.alive()
    finally:
        assert proc.stop() == 0, proc.output[-2000:]
