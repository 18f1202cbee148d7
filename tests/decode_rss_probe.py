"""Decode one hostile CompressedImage in a fresh process and print its peak RSS (JSON).

Why a process of its own, and why not ``resource.getrusage().ru_maxrss``: a peak is a
high-water mark for the whole process, and Linux carries ru_maxrss over fork + exec, so a child
of pytest (torch loaded, ~0.5 GB) starts with its parent's peak and a bomb would hide under it
(measured: +0 MB for a 48 MB decode). The probe reads the peak of its own address space
(``VmHWM`` in /proc/self/status) and resets it (``/proc/self/clear_refs``) right before the
bomb; the baseline is the resident size at that moment, after imports and a 512x512 warm-up
decode (libjpeg/libpng loaded, OpenCV's thread pool started).

    python tests/decode_rss_probe.py NAME [--max-pixels N] [--codec PATH/TO/codec.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from input_bombs import bombs, png_bytes


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> int:
    """Reset the peak to the current resident size and return it."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _status_bytes("VmRSS")


def _load_codec(path: str):
    if not path:
        from ros2_fed import codec

        return codec
    spec = importlib.util.spec_from_file_location("codec_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--max-pixels", type=int, default=0, help="0: the codec's default")
    parser.add_argument("--codec", default="", help="a codec.py to load instead of ros2_fed.codec")
    args = parser.parse_args()
    codec = _load_codec(args.codec)
    if args.name.startswith("legit "):  # "legit HxW": a valid all-zero RGB PNG that must decode
        h, w = (int(v) for v in args.name.split()[1].split("x"))
        data, fmt = png_bytes(w, h), "png"
    else:
        data, fmt = bombs()[args.name]
    kwargs = {"limits": codec.InputLimits(max_pixels=args.max_pixels)} if args.max_pixels else {}
    codec.to_rgb8(SimpleNamespace(format="png", data=png_bytes(512, 512)), **kwargs)  # warm-up
    msg = SimpleNamespace(format=fmt, data=data)
    baseline = _reset_peak()
    outcome, shape = "decoded", None
    try:
        shape = list(codec.to_rgb8(msg, **kwargs).shape)
    except ValueError as exc:  # ImageDecodeError
        outcome = f"refused: {getattr(exc, 'kind', type(exc).__name__)}"
    print(
        json.dumps(
            {
                "name": args.name,
                "baseline": baseline,
                "peak": _status_bytes("VmHWM"),
                "outcome": outcome,
                "shape": shape,
                "bytes": len(data),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
