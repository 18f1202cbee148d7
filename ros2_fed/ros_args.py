"""The ``--ros-args`` of a node's command line, checked before rclpy sees them.

Why: rclpy.init refuses a missing or malformed parameter file, a remap without ``:=`` or an
override without ``:=`` with a C-level ``[ERROR] [rcl]: Failed to parse global arguments`` and
an exception naming a source file of rcl, and a node process that lets it through exits 0, so a
supervisor sees a clean exit. The node asks :func:`problem` first and turns an answer into one
FATAL line and exit code 1. rcl's own parser stays the judge (the node hands the arguments to
``rclpy.utilities.remove_ros_args``, which parses them without printing); this module only
names the culprit the way a user wrote it. Pure: no rclpy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator, Optional

import yaml

ROS_ARGS, END = "--ros-args", "--"
PARAMS_FILE = "--params-file"
REMAP = ("-r", "--remap")
OVERRIDE = ("-p", "--param")
# rcl's flags that take the next argument (rcl/arguments.h); anything else stands alone
WITH_VALUE = (PARAMS_FILE, *REMAP, *OVERRIDE, "-e", "--enclave", "--log-level")
WITH_VALUE += ("--log-config-file", "--log-file-name")
REMAP_HELP = "a remap rule is FROM:=TO, e.g. -r image:=/camera/image_raw"
OVERRIDE_HELP = "an override is NAME:=VALUE, e.g. -p model.height:=512"
FILE_HELP = "a parameter file is NODE_NAME (or /**): ros__parameters: NAME: VALUE"


def ros_flags(argv: list[str]) -> Iterator[tuple[str, Optional[str]]]:
    """``(flag, value)`` for each flag inside the ``--ros-args`` sections (``value`` is None
    for a flag that takes none, or one left without its value at the end)."""
    inside, i = False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == ROS_ARGS:
            inside = True
        elif arg == END:
            inside = False
        elif inside and arg in WITH_VALUE:
            value = argv[i + 1] if i + 1 < len(argv) else None
            yield arg, value
            i += 1
        elif inside:
            yield arg, None
        i += 1


def params_file_problem(path: str) -> Optional[str]:
    """Why ``--params-file path`` cannot be read as YAML, or None."""
    file = Path(path)
    if not file.exists():
        return f"{PARAMS_FILE} {path}: no such file (from {Path.cwd()})"
    if not file.is_file():
        return f"{PARAMS_FILE} {path}: not a file"
    try:
        with file.open("r", encoding="utf-8") as stream:
            content = yaml.safe_load(stream)
    except OSError as exc:
        return f"{PARAMS_FILE} {path}: cannot read it ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return f"{PARAMS_FILE} {path}: not a text file"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start:
            what += f" ({context} from line {start.line + 1})"
        return f"{PARAMS_FILE} {path}: not valid YAML{where}: {what}"
    if not isinstance(content, dict):
        return f"{PARAMS_FILE} {path}: {FILE_HELP}"
    return None


_RCL_SOURCE = re.compile(r",? at /\S+:\d+")
_RCL_FILE = re.compile(r"Couldn't parse params file: '--params-file (.*?)'\. Error: (.*)", re.S)
_RCL_REMAP = re.compile(r"Couldn't parse remap rule: '(.*?)'")
_RCL_OVERRIDE = re.compile(r"Couldn't parse parameter override rule: '(.*?)'")


def rcl_message(text: str) -> str:
    """rcl's refusal as a user reads it: the argument named, rcl's source locations gone."""
    text = _RCL_SOURCE.sub("", text).strip()
    text = re.sub(r"^(failed to initialize rcl|Failed to parse ROS arguments): ", "", text)
    found = _RCL_FILE.search(text)
    if found:
        return f"{PARAMS_FILE} {found.group(1)}: {found.group(2).strip()} ({FILE_HELP})"
    found = _RCL_REMAP.search(text)
    if found:
        return f"bad remap {found.group(1)}: {REMAP_HELP}"
    found = _RCL_OVERRIDE.search(text)
    if found:
        return f"bad parameter override {found.group(1)}: {OVERRIDE_HELP}"
    return f"bad --ros-args: {text}"


def problem(argv: list[str], parse: Callable[[list[str]], object]) -> Optional[str]:
    """The first reason ``argv``'s ROS arguments would not start a node, or None. ``parse`` is
    rcl's parser (``rclpy.utilities.remove_ros_args``): its exception is the refusal."""
    for flag, value in ros_flags(argv):
        if flag in REMAP and value is not None and ":=" not in value:
            return f"bad remap {flag} {value}: {REMAP_HELP}"
        if flag in OVERRIDE and value is not None and ":=" not in value:
            return f"bad parameter override {flag} {value}: {OVERRIDE_HELP}"
        if flag == PARAMS_FILE and value is not None:
            found = params_file_problem(value)
            if found:
                return found
        if flag in WITH_VALUE and value is None:
            return f"{flag} at the end of --ros-args needs a value after it"
    try:
        parse(list(argv))
    except Exception as exc:  # rcl's refusals: RCLInvalidROSArgsError, UnknownROSArgsError
        if type(exc).__name__ == "UnknownROSArgsError":
            names = re.findall(r"'([^']*)'", str(exc)) or [str(exc)]
            return (
                f"unknown ROS argument {' '.join(names)} (--ros-args takes -r FROM:=TO, "
                "-p NAME:=VALUE, --params-file FILE, ...)"
            )
        return rcl_message(str(exc))
    return None
