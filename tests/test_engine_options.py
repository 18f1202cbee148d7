"""fed_node and the replay tool open engines with the same runtime options (one function)."""
from __future__ import annotations

from ros2_fed.engine.options import runtime_options


def test_onnxruntime_gets_threads_and_no_spinning_by_default() -> None:
    assert runtime_options(".onnx") == {"allow_spinning": False}
    assert runtime_options(".onnxruntime", threads=3, cpu_spin_wait=True) == {
        "intra_op_threads": 3, "allow_spinning": True}
    assert runtime_options(".onnx", device="cuda") == {"device": "cuda", "allow_spinning": False}


def test_tensorrt_takes_a_device_index_and_torch_threads() -> None:
    assert runtime_options(".engine", device="cuda:1", threads=4) == {"device": 1}
    assert runtime_options(".plan", device="cuda") == {"device": 0}
    assert runtime_options(".tensorrt") == {}
    assert runtime_options(".safetensors", threads=2, cpu_spin_wait=True) == {"threads": 2}
    assert runtime_options(".torch", device="cpu") == {"device": "cpu"}
