"""Backbone fingerprints: which frozen backbone a FED, its logit statistics or an engine belong to.

A FED detector and the logit statistics are only meaningful on the backbone they were computed
with: a FED-C trained on MiT-B0 runs on MiT-B2 without any error, and silently scores garbage.
So ``fed_stats``, ``fed_train`` and the engine sidecars record the backbone's fingerprint
(architecture, number of classes, SHA-256 of its tensors) and every consumer checks it with
:func:`check_backbone`: a mismatch is one :class:`BackboneMismatchError` naming both backbones,
which the CLIs turn into one line unless ``--allow-backbone-mismatch`` is given.

The tensor hash is the one the checkpoint already carries (``tensors_sha256`` of our format, the
file SHA-256 of an MMSeg ``.pth`` or a Hugging Face ``model.safetensors``, kept by
``ros2_fed.backbones.load_backbone`` in ``model.meta["sha256"]``); a converted checkpoint also
matches the file it was converted from (``meta["source"]["sha256"]``). Pure Python: no torch.

Checked by ``FusedDetector.from_checkpoints`` (so ``fed_export``, ``fed_calibrate`` and the engine
cache ``fed_node`` builds from ``model.backbone`` + ``model.fed``), ``fed_eval``, ``fed_stats
--into``, ``fed_train --stats/--resume`` and ``fed_bag_eval``'s reference rows (FEDs, ``--stats``
and the engine's sidecar).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

#: Where the fingerprint lives in a FED checkpoint's metadata, a statistics JSON and an
#: engine sidecar.
FINGERPRINT_KEY = "backbone_fingerprint"
#: The command-line flag that turns a mismatch into a warning (named in the error).
ALLOW_FLAG = "--allow-backbone-mismatch"


class BackboneMismatchError(ValueError):
    """A FED, statistics file or engine was made for another backbone than the one given."""


class FingerprintMissingWarning(UserWarning):
    """An older file without a backbone fingerprint: accepted, but nothing ties it to a
    backbone."""


@dataclass(frozen=True)
class BackboneFingerprint:
    """Architecture, number of classes and tensor hash of a backbone (plus the hash of its
    source file).

    ``name`` (the checkpoint's file name) is for messages only: it takes no part in comparisons.
    """

    arch: str
    num_classes: int
    sha256: Optional[str] = None
    source_sha256: Optional[str] = None
    name: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "num_classes": self.num_classes,
            "sha256": self.sha256,
            "source_sha256": self.source_sha256,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "BackboneFingerprint":
        return cls(
            arch=str(data.get("arch") or ""),
            num_classes=int(data.get("num_classes") or 0),
            sha256=data.get("sha256") or None,
            source_sha256=data.get("source_sha256") or None,
            name=str(data.get("name") or ""),
        )

    def hashes(self) -> set[str]:
        return {h for h in (self.sha256, self.source_sha256) if h}

    def matches(self, other: "BackboneFingerprint") -> bool:
        """Same architecture and classes, and the same weights when both sides know a hash."""
        if (self.arch, self.num_classes) != (other.arch, other.num_classes):
            return False
        mine, theirs = self.hashes(), other.hashes()
        return not (mine and theirs) or bool(mine & theirs)

    def describe(self) -> str:
        weights = f"tensors {self.sha256[:12]}" if self.sha256 else "tensor hash unknown"
        what = f"{self.arch or 'unknown arch'}, {self.num_classes} classes, {weights}"
        return f"{self.name} ({what})" if self.name else f"{what}"


def fingerprint_of(backbone: Any) -> BackboneFingerprint:
    """The fingerprint of a loaded backbone (``ros2_fed.backbones.load_backbone``'s ``arch``,
    ``num_classes`` and ``meta``), without touching its tensors."""
    meta = getattr(backbone, "meta", None) or {}
    source = meta.get("source") if isinstance(meta.get("source"), Mapping) else {}
    sha = meta.get("sha256") or None
    source_sha = source.get("sha256") or None
    num_classes = getattr(backbone, "num_classes", None) or meta.get("num_classes") or 0
    return BackboneFingerprint(
        arch=str(getattr(backbone, "arch", "") or meta.get("arch") or ""),
        num_classes=int(num_classes),
        sha256=sha,
        source_sha256=source_sha if source_sha != sha else None,
        name=str(source.get("file") or meta.get("name") or ""),
    )


def recorded_fingerprint(metadata: Mapping[str, Any]) -> Optional[BackboneFingerprint]:
    """The fingerprint a FED checkpoint, statistics JSON or engine sidecar recorded (None: older
    file)."""
    data = metadata.get(FINGERPRINT_KEY)
    return BackboneFingerprint.from_json(data) if isinstance(data, Mapping) else None


def check_backbone(
    recorded: Optional[Mapping[str, Any]],
    backbone: BackboneFingerprint,
    what: str,
    allow_mismatch: bool = False,
    flag: str = ALLOW_FLAG,
) -> None:
    """Raise :class:`BackboneMismatchError` when ``what`` (e.g. "FED checkpoint models/fed_u", with
    its metadata ``recorded``) was made for another backbone than ``backbone``.

    A file without a fingerprint (written before fingerprints existed) is accepted with a
    :class:`FingerprintMissingWarning`; ``allow_mismatch`` turns a mismatch into a warning.
    """
    expected = recorded_fingerprint(recorded or {})
    if expected is None:
        warnings.warn(
            f"{what} records no backbone fingerprint (an older file): cannot check that it "
            f"belongs to backbone {backbone.describe()}",
            FingerprintMissingWarning,
            stacklevel=2,
        )
        return
    if expected.matches(backbone):
        return
    message = (
        f"{what} was made for backbone {expected.describe()}, but the backbone given is "
        f"{backbone.describe()}"
    )
    if allow_mismatch:
        warnings.warn(f"{message} ({flag} given)", UserWarning, stacklevel=2)
        return
    hint = f"; pass {flag} to use it anyway" if flag else ""
    raise BackboneMismatchError(message + hint)
