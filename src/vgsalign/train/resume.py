"""Checkpoints and resume safety.

A checkpoint records, besides the model and optimiser state, every setting that affects
the result (`result_settings`: the model, train and frames slices less the operational
keys, the input shape, the shards' extraction attributes and a fingerprint of the
captions trained and validated on). `train.resume` is operational itself: it is not part
of the rule's params, so switching it never forces a retrain. With resume on, a run
continues from `state/last.pt` only when those settings equal the checkpoint's;
otherwise it stops with one line listing the differences (`train.resume: true`) or
starts fresh and says so (`train.resume: fresh_if_changed`). A larger `train.epochs`
continues training; a smaller one than the checkpoint has trained counts as a difference.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import InputError
from .models import InputShape, ModelSettings, VGSModel, build_model

CHECKPOINT_FORMAT = "vgsalign-checkpoint-2"
# train settings that change how a run runs, not what it computes
OPERATIONAL_KEYS = ("resume", "device", "epochs")
RESUME_MODES = (False, True, "fresh_if_changed")


def save_checkpoint(state: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, expected_arch: str | None = None) -> dict:
    """Read a checkpoint; refuse files of another format or architecture, naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for foreign files
        raise InputError(path, f"not a readable vgsalign checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, f"not a vgsalign checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if expected_arch is not None and state["arch"] != expected_arch:
        raise InputError(
            path, f"checkpoint of architecture {state['arch']!r}, but model.arch is {expected_arch!r}; "
            f"retrain or set model.arch to {state['arch']!r}"
        )
    return state


def model_from_checkpoint(state: dict, path: str | Path, settings: ModelSettings | None = None) -> VGSModel:
    """Rebuild the model a checkpoint records; with `settings`, they must match the recorded ones."""
    recorded = ModelSettings(**state["model_settings"])
    if settings is not None and dataclasses.asdict(settings) != dataclasses.asdict(recorded):
        diff = {k: (v, getattr(settings, k)) for k, v in dataclasses.asdict(recorded).items() if getattr(settings, k) != v}
        raise InputError(path, f"checkpoint model settings differ from the config (recorded, config): {diff}")
    model = build_model(recorded, InputShape(**state["input_shape"]))
    model.load_state_dict(state["model_state"])
    return model


def fingerprint(*id_lists: np.ndarray) -> str:
    """Hash of the ids trained and validated on, in order (a changed corpus or held-out set)."""
    digest = hashlib.sha256()
    for ids in id_lists:
        digest.update("\n".join(map(str, ids.tolist())).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def result_settings(model: ModelSettings, train, frames, shape: InputShape, feature_attrs: dict, data: str) -> dict:
    """Flat {dotted key: value} of everything that changes what training computes."""
    out = {f"model.{k}": v for k, v in dataclasses.asdict(model).items()}
    out |= {f"train.{k}": v for k, v in dataclasses.asdict(train).items() if k not in OPERATIONAL_KEYS}
    out |= {f"frames.{k}": v for k, v in dataclasses.asdict(frames).items()}
    out |= {f"input.{k}": v for k, v in shape.as_dict().items()}
    out |= {f"shards.{modality}.{k}": v for modality, attrs in feature_attrs.items() for k, v in attrs.items()}
    out["data.captions_and_images"] = data
    return out


def differences(recorded: dict, current: dict) -> list[str]:
    """`key recorded -> current` for every setting that differs (or is only on one side)."""
    missing = object()
    return [f"{key} {recorded.get(key, '(unset)')!r} -> {current.get(key, '(unset)')!r}"
            for key in sorted(set(recorded) | set(current))
            if recorded.get(key, missing) != current.get(key, missing)]


def resume_state(state_path: Path, mode, current: dict, epochs: int, log: Callable[[str], None]) -> dict | None:
    """The checkpoint to continue from, or None to train from scratch (see module doc)."""
    if mode is False:
        return None
    if not state_path.is_file():
        log("train.resume is on but no checkpoint exists yet; starting from scratch")
        return None
    try:
        state = load_checkpoint(state_path)
    except InputError as err:  # unreadable or of an older format: its settings are unknown
        if mode != "fresh_if_changed":
            raise
        log(f"{err}: starting fresh (train.resume: fresh_if_changed)")
        return None
    changed = differences(state["result_settings"], current)
    if state["epoch"] > epochs:
        changed.append(f"train.epochs: the checkpoint has trained {state['epoch']} epochs, more than {epochs}")
    if not changed:
        log(f"resuming from {state_path} after epoch {state['epoch']}")
        return state
    listing = "; ".join(changed)
    if mode == "fresh_if_changed":
        log(f"settings changed since {state_path} ({listing}): starting fresh (train.resume: fresh_if_changed)")
        return None
    raise InputError(state_path, f"cannot resume, settings differ from the checkpoint's: {listing}; "
                                 f"set train.resume: fresh_if_changed to retrain, or restore them")
