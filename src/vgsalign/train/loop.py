"""`vgsalign train-model`: train a VGS model on feature shards, validate every epoch.

Outputs in --out-dir (docs/formats.md, "Training"):
  checkpoint_best.pt   the epoch chosen by train.select_by (val_loss: lowest; recall: highest
                       mean full-split R@10 of both directions); ties go to the later epoch
  checkpoint_last.pt   the last epoch (model, optimizer, loss temperature, history)
  history.csv          one row per epoch (see docs/training.md for the columns); the same
                       seed on the same machine and thread count gives the same bytes
  timing.csv           seconds and samples/s per epoch (machine-dependent, so kept apart)
  curves.png           losses and recalls per epoch
  retrieval.json       final retrieval figures of the best checkpoint on the validation set

The shards are streamed a few at a time (vgsalign.train.streaming). Every epoch ends with
an atomic checkpoint in `<out-dir>/state/last.pt`, which is not a declared workflow
output and so survives the workflow's removal of incomplete outputs; resuming from it is
checked against every setting that affects the result (vgsalign.train.resume). Every
epoch's shard order, batch order, impostors and dropout masks come from (seed, epoch), not
from the state of a random generator, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..atomic import write_csv, write_json
from ..errors import InputError
from ..runtime import progress_bar, set_torch_threads
from ..settings import settings_from_json
from .curves import plot_curves
from .device import autocast, pick_device
from .data import Batch, check_frames, check_splits_agree, cut_batches, epoch_plan, training_batches
from .losses import LOSSES, REDUCTIONS, InfoNCE, draw_impostors, triplet_hardest, triplet_random
from .models import InputShape, ModelSettings, VGSModel, build_model
from .resume import (CHECKPOINT_FORMAT, RESUME_MODES, fingerprint, load_checkpoint, model_from_checkpoint, result_settings,
                     resume_state, save_checkpoint)
from .retrieval import chance_levels
from .streaming import ShardedSplit, open_split
from .validation import EvalSet, eval_set, evaluate, heldout_images

__all__ = ["TrainSettings", "FrameSettings", "pick_device", "autocast", "load_checkpoint", "model_from_checkpoint",
           "run_training", "main"]


@dataclass
class TrainSettings:
    """The `train` config slice (defaults and meanings: the schema's train section)."""

    loss: str
    margin: float
    lr: float
    batch_size: int
    epochs: int
    seed: int
    select_by: str
    device: str
    pool_size: int
    pool_trials: int
    eval_max_images: int
    validation: str
    heldout_share: float
    shards_per_group: int
    impostors: str
    loss_reduction: str
    resume: bool | str  # operational: not in the rule's params, the step gets it as --resume

    def __post_init__(self) -> None:
        choices = {"loss": LOSSES, "select_by": ("val_loss", "recall"), "validation": ("heldout", "split"),
                   "impostors": ("batch", "chunk"), "loss_reduction": REDUCTIONS, "resume": RESUME_MODES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise InputError(f"train.{key}", f"{getattr(self, key)!r} is not one of {list(allowed)}")
        if self.batch_size < 2:
            raise InputError("train.batch_size", "must be at least 2 (batch norm, in-batch impostors)")
        if self.impostors == "chunk" and self.loss != "triplet_random":
            raise InputError("train.impostors", f"chunk impostors apply to loss triplet_random, not {self.loss!r}")
        if not 0 < self.heldout_share < 1:
            raise InputError("train.heldout_share", f"{self.heldout_share} is not between 0 and 1")


@dataclass
class FrameSettings:
    """The `frames` config slice (how captions were cut and padded)."""

    hop_s: float
    max: int
    padding: str


def input_shape(split: ShardedSplit) -> InputShape:
    (frames, n_mels), (h, w, c) = split.logmel_shape, split.feature_shape
    return InputShape(frames=frames, n_mels=n_mels, grid_h=h, grid_w=w, channels=c)


@dataclass
class Parts:
    """What an epoch changes: the model, the InfoNCE temperature, the optimiser."""

    model: VGSModel
    loss_fn: InfoNCE | None
    optimizer: torch.optim.Optimizer

    def log_temperature(self) -> torch.Tensor | None:
        return None if self.loss_fn is None else self.loss_fn.log_temperature.detach().float().cpu()


def build_parts(model_settings: ModelSettings, settings: TrainSettings, shape: InputShape, device: torch.device) -> Parts:
    torch.manual_seed(settings.seed)  # initial weights
    model = build_model(model_settings, shape).to(device)
    loss_fn = InfoNCE().to(device) if settings.loss == "infonce" else None
    parameters = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    return Parts(model, loss_fn, torch.optim.Adam(parameters, lr=settings.lr))


# ---------------------------------------------------------------- one epoch


def batch_loss(model: VGSModel, loss_fn: InfoNCE | None, settings: TrainSettings, batch: Batch,
               rng: np.random.Generator) -> torch.Tensor:
    """The configured loss of one batch of (caption, its image) pairs."""
    audio, image = model.encode_audio(batch.logmel), model.encode_image(batch.features)
    rows, reduction = batch.image_rows, settings.loss_reduction
    if settings.loss == "triplet_random":
        pos = model.pair_similarity(audio, image).float()
        if batch.impostor_logmel is not None:  # from the chunk: never masked, as the original
            s_image = model.pair_similarity(audio, model.encode_image(batch.impostor_features)).float()
            s_caption = model.pair_similarity(model.encode_audio(batch.impostor_logmel), image).float()
            return triplet_random(pos, s_image, s_caption, settings.margin, None, reduction)
        imp_image, imp_caption = draw_impostors(rows, rng), draw_impostors(rows, rng)
        valid = torch.as_tensor(imp_image != np.arange(len(rows)), device=audio.device)
        s_image = model.pair_similarity(audio, image[imp_image]).float()
        s_caption = model.pair_similarity(audio[imp_caption], image).float()
        return triplet_random(pos, s_image, s_caption, settings.margin, valid, reduction)
    sim = model.similarity_matrix(audio, image).float()
    ids = torch.as_tensor(rows, device=audio.device)
    if settings.loss == "triplet_hardest":
        return triplet_hardest(sim, ids, settings.margin, reduction)
    return loss_fn(sim, ids, reduction)


def train_one_epoch(parts: Parts, split: ShardedSplit, use: np.ndarray, settings: TrainSettings, epoch: int,
                    device: torch.device, on_step: Callable[[int, int], None] | None = None) -> tuple[float, int, float]:
    """One pass over the used captions; returns (mean loss per pair, pairs, seconds)."""
    rng = np.random.default_rng([settings.seed, epoch])
    torch.manual_seed(settings.seed * 1_000_003 + epoch)  # dropout masks of this epoch
    plans = epoch_plan(split, use, settings.shards_per_group, rng)
    n_batches = sum(len(cut_batches(plan.order, settings.batch_size)) for plan in plans)
    parts.model.train()
    total, count = 0.0, 0
    start = time.perf_counter()
    batches = training_batches(split, plans, settings.batch_size, device, rng, settings.impostors == "chunk")
    with progress_bar(total=n_batches, desc=f"epoch {epoch}/{settings.epochs}", unit="batch") as bar:
        for step, batch in enumerate(batches):
            with autocast(device):
                loss = batch_loss(parts.model, parts.loss_fn, settings, batch, rng)
            if not torch.isfinite(loss):  # the inputs were checked when read: the model itself diverged
                raise InputError("train.lr", f"training loss became {loss.item()} at epoch {epoch}, batch {step + 1}, "
                                             f"from finite inputs: the model diverged; lower train.lr")
            parts.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            parts.optimizer.step()
            n = len(batch.image_rows)
            total += float(loss.detach()) * (n if settings.loss_reduction == "mean" else 1)
            count += n
            bar.update(1)
            if on_step is not None:
                on_step(epoch, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return total / count, count, time.perf_counter() - start


# ---------------------------------------------------------------- records


def history_row(epoch: int, train_loss: float, n: int, val: dict, parts: Parts) -> dict:
    full, pooled, meanpool = val["full"], val["pooled"], val["pooled_meanpool"]
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["val_loss"]}
    for direction in ("a2i", "i2a"):
        for key in ("r1", "r5", "r10", "median_rank"):
            row[f"{key}_{direction}"] = full[direction][key]
    row.update({
        "pooled_r10_a2i": pooled["r10_a2i"], "pooled_r10_i2a": pooled["r10_i2a"],
        "pooled_meanpool_r10_a2i": meanpool["r10_a2i"], "pooled_meanpool_r10_i2a": meanpool["r10_i2a"],
        "pool_size": pooled["pool_size"],
        "temperature": parts.loss_fn.temperature if parts.loss_fn is not None else math.nan,
        "train_captions": n,
    })
    return row


def selection_value(row: dict, select_by: str) -> float:
    """Lower is better (recall is negated)."""
    if select_by == "val_loss":
        return row["val_loss"]
    return -(row["r10_a2i"] + row["r10_i2a"]) / 2


def epoch_line(row: dict, settings: TrainSettings, chance: dict, timing: dict, is_best: bool) -> str:
    return (
        f"epoch {row['epoch']}/{settings.epochs}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
        f"R@10 a2i {row['r10_a2i']:.3f} i2a {row['r10_i2a']:.3f} (chance {chance['a2i']['r10']:.3f} / "
        f"{chance['i2a']['r10']:.3f}) pooled R@10 {row['pooled_r10_a2i']:.3f}/{row['pooled_r10_i2a']:.3f} "
        f"(mean-pooled {row['pooled_meanpool_r10_a2i']:.3f}/{row['pooled_meanpool_r10_i2a']:.3f}) "
        f"| {timing['samples_per_s']:.1f} samples/s, train {timing['train_s']:.1f} s, val {timing['val_s']:.1f} s"
        + (" *best*" if is_best else "")
    )


# ---------------------------------------------------------------- the run


@dataclass
class Plan:
    """What a run trains and validates on, and the settings its checkpoints record."""

    train: ShardedSplit
    use: np.ndarray  # bool per training caption: trained on
    es: EvalSet
    shape: InputShape
    recorded: dict


def plan_run(train: ShardedSplit, val: ShardedSplit | None, model_settings: ModelSettings, settings: TrainSettings,
             frames: FrameSettings) -> Plan:
    """Check the shards, choose training captions and the validation set (vgsalign.train.validation)."""
    if settings.validation == "split":
        if val is None:
            raise InputError("train.validation", "is split, but no validation shards were given (--val-audio/--val-visual)")
        check_splits_agree(train, val)
    for data in (train, val) if settings.validation == "split" else (train,):
        check_frames(data, frames.max, frames.padding, frames.hop_s)
    if settings.validation == "heldout":
        if train.n_images < 4:
            raise InputError(train.audio_files[0], f"{train.n_images} image(s) are too few to hold some out for "
                                                   f"validation; set train.validation: split")
        held = heldout_images(train.image_ids, settings.heldout_share)
        use, es = ~held[train.caption_image], eval_set(train, held, settings.eval_max_images, settings.seed)
    else:
        use = np.ones(train.n_captions, dtype=bool)
        es = eval_set(val, np.ones(val.n_images, dtype=bool), settings.eval_max_images, settings.seed)
    shape = input_shape(train)
    data = fingerprint(train.utt_ids[use], es.split.utt_ids[es.captions], es.split.image_ids[es.images])
    attrs = {"audio": train.audio_attrs, "visual": train.visual_attrs}
    return Plan(train, use, es, shape, result_settings(model_settings, settings, frames, shape, attrs, data))


def checkpoint_state(parts: Parts, plan: Plan, model_settings: ModelSettings, settings: TrainSettings,
                     frames: FrameSettings, epoch: int, history: list, best: dict) -> dict:
    return {
        "format": CHECKPOINT_FORMAT, "arch": model_settings.arch, "result_settings": plan.recorded,
        "model_settings": dataclasses.asdict(model_settings), "train_settings": dataclasses.asdict(settings),
        "frames": dataclasses.asdict(frames), "input_shape": plan.shape.as_dict(),
        "feature_attrs": {"audio": plan.train.audio_attrs, "visual": plan.train.visual_attrs},
        "epoch": epoch, "model_state": parts.model.state_dict(),
        "loss_state": parts.loss_fn.state_dict() if parts.loss_fn is not None else {},
        "optimizer_state": parts.optimizer.state_dict(), "history": history, "best": best,
    }


def restore(parts: Parts, state: dict) -> None:
    parts.model.load_state_dict(state["model_state"])
    if parts.loss_fn is not None:
        parts.loss_fn.load_state_dict(state["loss_state"])
    parts.optimizer.load_state_dict(state["optimizer_state"])


def run_training(
    train_data: ShardedSplit, val_data: ShardedSplit | None, model_settings: ModelSettings, settings: TrainSettings,
    frames: FrameSettings, out_dir: str | Path, log: Callable[[str], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict:
    """Train, validate each epoch, write the outputs; returns the retrieval summary.

    `on_step(epoch, step)` is called after every optimiser step (e.g. to stop a run)."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    state_path = out_dir / "state" / "last.pt"
    plan = plan_run(train_data, val_data, model_settings, settings, frames)
    device = pick_device(settings.device)
    if device.type == "cuda":  # fast kernels; runs on a GPU are not bit-identical (docs/training.md)
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    parts = build_parts(model_settings, settings, plan.shape, device)
    state = resume_state(state_path, settings.resume, plan.recorded, settings.epochs, log)
    history, timing, best = [], [], {"epoch": None, "value": math.inf}
    if state is not None:
        restore(parts, state)
        history, timing, best = state["history"], state.get("timing", []), state["best"]
    chance = chance_levels(plan.es.caption_image, len(plan.es.images))
    log(
        f"device {device}; train {int(plan.use.sum())} captions of {plan.train.n_captions} in {plan.train.n_audio_shards} "
        f"shard(s), {settings.shards_per_group} per group; validation ({settings.validation}) {len(plan.es.captions)} "
        f"captions / {len(plan.es.images)} images of {plan.es.split.name}; input {plan.shape.as_dict()}; "
        f"{sum(p.numel() for p in parts.model.parameters()):,} parameters"
    )
    for epoch in range(len(history) + 1, settings.epochs + 1):
        train_loss, n, seconds = train_one_epoch(parts, plan.train, plan.use, settings, epoch, device, on_step)
        t0 = time.perf_counter()
        val = evaluate(parts.model, parts.log_temperature(), plan.es, settings, device, epoch)
        history.append(history_row(epoch, train_loss, n, val, parts))
        timing.append({"epoch": epoch, "samples_per_s": n / seconds, "train_s": seconds, "val_s": time.perf_counter() - t0})
        value = selection_value(history[-1], settings.select_by)
        is_best = value <= best["value"]
        best = {"epoch": epoch, "value": value} if is_best else best
        state = checkpoint_state(parts, plan, model_settings, settings, frames, epoch, history, best) | {"timing": timing}
        save_checkpoint(state, state_path)
        if is_best:
            save_checkpoint(state, state_path.with_name("best.pt"))
        log(epoch_line(history[-1], settings, chance, timing[-1], is_best))
    return finish(parts, plan, model_settings, settings, device, out_dir, history, timing, chance)


def finish(parts: Parts, plan: Plan, model_settings: ModelSettings, settings: TrainSettings, device: torch.device,
           out_dir: Path, history: list, timing: list, chance: dict) -> dict:
    """Declared outputs from the state files, and the best checkpoint's retrieval figures."""
    state_dir = out_dir / "state"
    best_state, last_state = load_checkpoint(state_dir / "best.pt"), load_checkpoint(state_dir / "last.pt")
    save_checkpoint(last_state, out_dir / "checkpoint_last.pt")
    save_checkpoint(best_state, out_dir / "checkpoint_best.pt")
    write_csv(pd.DataFrame(history), out_dir / "history.csv")
    write_csv(pd.DataFrame(timing), out_dir / "timing.csv")
    plot_curves(history, out_dir / "curves.png", chance)
    parts.model.load_state_dict(best_state["model_state"])
    if parts.loss_fn is not None:
        parts.loss_fn.load_state_dict(best_state["loss_state"])
    val = evaluate(parts.model, parts.log_temperature(), plan.es, settings, device, best_state["epoch"])
    es = plan.es
    summary = {
        "split": es.split.name, "validation": settings.validation, "checkpoint": str(out_dir / "checkpoint_best.pt"),
        "best_epoch": best_state["epoch"], "select_by": settings.select_by, "epochs_trained": len(history),
        "arch": model_settings.arch, "similarity": model_settings.similarity if model_settings.arch == "matchmap" else "cosine",
        "n_captions": int(len(es.captions)), "n_images": int(len(es.images)), "n_images_in_split": int(es.split.n_images),
        "n_validation_candidates": es.n_candidates, "val_loss": val["val_loss"],
        "image_retrieval_from_captions": val["full"]["a2i"], "caption_retrieval_from_images": val["full"]["i2a"],
        "pooled_r10": val["pooled"], "pooled_r10_meanpool": val["pooled_meanpool"],
        "chance": {"image_retrieval_from_captions": chance["a2i"], "caption_retrieval_from_images": chance["i2a"]},
    }
    write_json(summary, out_dir / "retrieval.json")
    return summary


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vgsalign train-model", description="Train a VGS model on feature shards.")
    p.add_argument("--train-audio", nargs="+", required=True, help="audio shards of the training split")
    p.add_argument("--train-visual", nargs="+", required=True, help="visual shards of the training split")
    p.add_argument("--val-audio", nargs="*", default=[], help="audio shards of the validation split (train.validation: split)")
    p.add_argument("--val-visual", nargs="*", default=[], help="visual shards of the validation split")
    p.add_argument("--train-split", default="train", help="name of the training split (for messages)")
    p.add_argument("--val-split", default="val", help="name of the validation split")
    p.add_argument("--model", required=True, help="the model config slice as JSON")
    p.add_argument("--train", dest="train_settings", required=True, help="the train config slice as JSON")
    p.add_argument("--frames", required=True, help="the frames config slice as JSON")
    p.add_argument("--resume", default=None, choices=["true", "false", "True", "False", "fresh_if_changed"],
                   help="overrides train.resume (an operational switch, kept out of the rule's params)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch, at most the CPUs this process may use (0: torch's default)")
    p.add_argument("--out-dir", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    set_torch_threads(args.threads)
    model_settings = settings_from_json(ModelSettings, args.model, "--model", section="model")
    settings = settings_from_json(TrainSettings, args.train_settings, "--train", section="train")
    if args.resume is not None:
        resume = {"true": True, "false": False}.get(args.resume.lower(), args.resume)
        settings = dataclasses.replace(settings, resume=resume)
    frames = settings_from_json(FrameSettings, args.frames, "--frames", section="frames")
    train_data = open_split(args.train_split, args.train_audio, args.train_visual)
    val_data = open_split(args.val_split, args.val_audio, args.val_visual) if settings.validation == "split" else None
    summary = run_training(train_data, val_data, model_settings, settings, frames, args.out_dir)
    a2i, i2a = summary["image_retrieval_from_captions"], summary["caption_retrieval_from_images"]
    print(
        f"best epoch {summary['best_epoch']}: R@10 image from caption {a2i['r10']:.3f}, caption from image "
        f"{i2a['r10']:.3f} over {summary['n_images']} images", file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("train-model", main))
