"""fed_node and the replay tool open engines with the same runtime options (one function),
and the replay hands fed_node the same parameters it opens its own engine with."""

from __future__ import annotations

import pytest

from ros2_fed.engine.options import runtime_options


def test_onnxruntime_gets_threads_and_no_spinning_by_default() -> None:
    assert runtime_options(".onnx") == {"allow_spinning": False}
    assert runtime_options(".onnxruntime", threads=3, cpu_spin_wait=True) == {
        "intra_op_threads": 3,
        "allow_spinning": True,
    }
    assert runtime_options(".onnx", device="cuda") == {"device": "cuda", "allow_spinning": False}


def test_tensorrt_takes_a_device_index_and_torch_threads() -> None:
    assert runtime_options(".engine", device="cuda:1", threads=4) == {"device": 1}
    assert runtime_options(".plan", device="cuda") == {"device": 0}
    assert runtime_options(".tensorrt") == {}
    assert runtime_options(".safetensors", threads=2, cpu_spin_wait=True) == {"threads": 2}
    assert runtime_options(".torch", device="cpu") == {"device": "cpu"}


def test_replay_opens_its_engine_and_starts_fed_node_with_the_same_options() -> None:
    from ros2_fed.pipeline import ModelSpec

    spec = ModelSpec(threads=2, cpu_spin_wait=True).resolved(64, 128)
    assert spec.runtime_options() == {"intra_op_threads": 2, "allow_spinning": True}
    params = spec.node_params()
    assert params["threads"] == 2 and params["cpu_spin_wait"] is True
    assert ModelSpec(engine_path="m.onnx").runtime_options() == {"allow_spinning": False}
    # fed_node reads the same spec back from those parameters
    assert ModelSpec.from_params(params).resolved() == spec


def test_every_parameter_replay_hands_fed_node_is_declared_with_its_type() -> None:
    from ros2_fed.pipeline import PARAMETER_SPECS, ModelSpec

    for name, value in ModelSpec().resolved(64, 128).node_params().items():
        assert name in PARAMETER_SPECS, name
        assert type(value) is type(PARAMETER_SPECS[name].default), (name, value)


def test_replay_rejects_a_non_boolean_spin_parameter() -> None:
    from ros2_fed.eval.replay.evaluation import UsageError, _bool_param

    assert _bool_param({"cpu_spin_wait": True}, "cpu_spin_wait") is True
    assert _bool_param({}, "cpu_spin_wait") is False
    with pytest.raises(UsageError, match="cpu_spin_wait"):
        _bool_param({"cpu_spin_wait": "maybe"}, "cpu_spin_wait")
