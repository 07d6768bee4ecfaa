"""Models directories: what a trained checkpoint is on disk, and loading it safely.

A checkpoint is a directory:

- ``weights.pt``: the TFT's ``state_dict``, loaded with ``torch.load(weights_only=True)`` (no
  pickled code runs on load);
- ``model.onnx`` (optional): the same network for onnxruntime, with the interpretation outputs;
- ``metadata.json``: format version, the feature spec and its hash, the network config, the
  risk head, the post-network anchor (``models.anchor``; absent: the network's output is
  served as is), the training data's fingerprint, package versions, metrics, training settings,
  and the sha256 of every file.

``load`` rebuilds the network from the spec and config (``network.build``) and refuses - with
``SpecMismatch`` - a checkpoint whose spec differs from the one the caller expects, and - with
``CheckpointError`` - one whose files do not match their recorded checksums.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from models.anchor import Anchor
from models.errors import CheckpointError, SpecMismatch
from models.features import FeatureSpec
from models.network import NetConfig
from models.risk import RiskHead

FORMAT = 1
WEIGHTS = "weights.pt"
ONNX = "model.onnx"
META = "metadata.json"
DEFAULT_DIR = Path(__file__).resolve().parent / "checkpoints" / "default"


@dataclass
class Checkpoint:
    path: Path
    spec: FeatureSpec
    net: NetConfig
    risk: RiskHead | None
    metadata: dict[str, Any] = field(default_factory=dict)
    anchor: Anchor | None = None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.path.name))

    @property
    def onnx_path(self) -> Path | None:
        p = self.path / ONNX
        return p if p.exists() else None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("vitaltwin", "torch", "pytorch-forecasting", "lightning", "numpy", "onnxruntime"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(
    directory: str | Path,
    model: Any,
    spec: FeatureSpec,
    net: NetConfig,
    risk: RiskHead | None,
    extra: dict[str, Any],
    onnx_bytes: bytes | None = None,
    anchor: Anchor | None = None,
) -> Path:
    import torch

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(state, out / WEIGHTS)
    files = {WEIGHTS: _sha256(out / WEIGHTS)}
    if onnx_bytes is not None:
        (out / ONNX).write_bytes(onnx_bytes)
        files[ONNX] = _sha256(out / ONNX)
    elif (out / ONNX).exists():
        (out / ONNX).unlink()  # a stale export of an earlier model must not be picked up
    meta = {
        "format": FORMAT,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash(),
        "net": net.to_dict(),
        "risk": None if risk is None else risk.to_dict(),
        "anchor": None if anchor is None else anchor.to_dict(),
        "versions": versions(),
        "files": files,
        **extra,
    }
    (out / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def read(directory: str | Path, spec: FeatureSpec | None = None) -> Checkpoint:
    """Metadata and spec checks only (no torch): what ``load`` verifies before building."""
    root = Path(directory)
    meta_path = root / META
    if not meta_path.exists():
        raise CheckpointError(f"{root} is not a checkpoint: {META} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint format {meta.get('format')!r} is not {FORMAT}")
    stored = FeatureSpec.from_dict(meta["spec"])
    if stored.hash() != meta.get("spec_hash"):
        raise CheckpointError("the checkpoint's spec does not match its recorded spec hash")
    if spec is not None and spec.hash() != stored.hash():
        theirs, ours = stored.to_dict(), spec.to_dict()
        diff = sorted(k for k in ours if ours[k] != theirs.get(k))
        raise SpecMismatch(
            f"checkpoint {root} was trained with feature spec {stored.hash()}, not "
            f"{spec.hash()} (differs in: {', '.join(diff)}); retrain it or load it with its spec"
        )
    for name, digest in meta.get("files", {}).items():
        p = root / name
        if not p.exists():
            raise CheckpointError(f"{p} is missing")
        if _sha256(p) != digest:
            raise CheckpointError(f"{p} does not match its recorded sha256")
    net = NetConfig(**meta["net"])
    risk = None if meta.get("risk") is None else RiskHead.from_dict(meta["risk"])
    anchor = None if meta.get("anchor") is None else Anchor.from_dict(meta["anchor"], stored)
    return Checkpoint(root, stored, net, risk, meta, anchor)


def load(directory: str | Path, spec: FeatureSpec | None = None) -> tuple[Any, Checkpoint]:
    """(TFT in eval mode, checkpoint) - refuses a spec mismatch or a corrupted file."""
    import torch

    from models import network

    ckpt = read(directory, spec)
    model = network.build(ckpt.spec, ckpt.net)
    state = torch.load(ckpt.path / WEIGHTS, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise SpecMismatch(f"weights do not fit the network the spec describes: {exc}") from None
    model.eval()
    return model, ckpt


def available(root: str | Path) -> list[Path]:
    """Checkpoint directories directly under ``root``."""
    base = Path(root)
    return sorted(p for p in base.iterdir() if (p / META).exists()) if base.is_dir() else []
