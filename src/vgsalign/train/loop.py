"""`vgsalign train`: train a VGS model on feature shards, validate every epoch.

Outputs in --out-dir (docs/formats.md, "Training"):
  checkpoint_best.pt   the epoch chosen by train.select_by (val_loss: lowest; recall: highest
                       mean full-split R@10 of both directions); ties go to the later epoch
  checkpoint_last.pt   the last epoch (model, optimizer, loss temperature, history)
  history.csv          one row per epoch (see docs/training.md for the columns)
  curves.png           losses and recalls per epoch
  retrieval.json       final retrieval figures of the best checkpoint on the validation split

Every epoch ends with an atomic checkpoint in `<out-dir>/state/last.pt` (and
checkpoint_last.pt). That state file is not a declared workflow output, so it survives
the workflow's removal of incomplete outputs: with `train.resume: true` a run interrupted
anywhere continues after the last completed epoch, and (on the same device) reproduces
the history of an uninterrupted run exactly: every epoch's batch order, impostors and
dropout masks come from (seed, epoch), not from the state of a random generator.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..atomic import atomic_path, write_csv, write_json
from ..runtime import set_torch_threads
from ..errors import InputError
from .losses import LOSSES, InfoNCE, draw_impostors, infonce, triplet_hardest, triplet_random
from .models import InputShape, ModelSettings, VGSModel, build_model
from .retrieval import chance_levels, full_split_retrieval, pooled_recall_at_10
from ..settings import settings_from_json
from .data import BatchSource, SplitData, check_frames, check_splits_agree, cut_batches, epoch_order, load_split

CHECKPOINT_FORMAT = "vgsalign-checkpoint-1"
# history columns whose values depend on the machine, not on the computation
TIMING_COLUMNS = ("samples_per_s", "train_s", "val_s")


@dataclass
class TrainSettings:
    """The `train` config slice."""

    loss: str = "triplet_random"
    margin: float = 0.1
    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 15
    seed: int = 0
    select_by: str = "val_loss"
    resume: bool = False
    device: str = "auto"
    num_workers: int = 0
    pool_size: int = 1000
    pool_trials: int = 100
    eval_max_images: int = 1000

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise InputError("train.loss", f"{self.loss!r} is not one of {list(LOSSES)}")
        if self.select_by not in ("val_loss", "recall"):
            raise InputError("train.select_by", f"{self.select_by!r} is not one of ['val_loss', 'recall']")
        if self.batch_size < 2:
            raise InputError("train.batch_size", "must be at least 2 (batch norm, in-batch impostors)")


@dataclass
class FrameSettings:
    """The `frames` config slice (how captions were cut and padded)."""

    hop_s: float = 0.01
    max: int = 512
    padding: str = "start"


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device", "cuda requested but no CUDA device is available")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def autocast(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed), full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def input_shape(data: SplitData) -> InputShape:
    _, frames, n_mels = data.logmel.shape
    _, h, w, c = data.features.shape
    return InputShape(frames=frames, n_mels=n_mels, grid_h=h, grid_w=w, channels=c)


# ---------------------------------------------------------------- checkpoints


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


# ---------------------------------------------------------------- one epoch


def batch_loss(
    model: VGSModel, loss_fn: InfoNCE | None, settings: TrainSettings,
    audio: torch.Tensor, image: torch.Tensor, image_rows: np.ndarray, rng: np.random.Generator,
) -> torch.Tensor:
    """The configured loss of one batch of encoded (caption, its image) pairs."""
    rows = torch.as_tensor(image_rows, device=audio.device)
    if settings.loss == "triplet_random":
        imp_image = draw_impostors(image_rows, rng)
        imp_caption = draw_impostors(image_rows, rng)
        valid = torch.as_tensor(imp_image != np.arange(len(image_rows)), device=audio.device)
        pos = model.pair_similarity(audio, image).float()
        s_image = model.pair_similarity(audio, image[imp_image]).float()
        s_caption = model.pair_similarity(audio[imp_caption], image).float()
        return triplet_random(pos, s_image, s_caption, settings.margin, valid)
    sim = model.similarity_matrix(audio, image).float()
    if settings.loss == "triplet_hardest":
        return triplet_hardest(sim, rows, settings.margin)
    return loss_fn(sim, rows)


def after_step(epoch: int, step: int) -> None:
    """Called after every optimiser step (a hook for tests that interrupt a run)."""


def train_one_epoch(
    model: VGSModel, loss_fn: InfoNCE | None, optimizer: torch.optim.Optimizer, source: BatchSource,
    data: SplitData, settings: TrainSettings, epoch: int, device: torch.device,
) -> tuple[float, int, float]:
    rng = np.random.default_rng([settings.seed, epoch])
    torch.manual_seed(settings.seed * 1_000_003 + epoch)  # dropout masks of this epoch
    batches = cut_batches(epoch_order(data.caption_image, rng), settings.batch_size)
    model.train()
    total, count = 0.0, 0
    start = time.perf_counter()
    for step, (logmel, features, image_rows) in enumerate(source.iterate(batches, prefetch=settings.num_workers > 0)):
        with autocast(device):
            audio, image = model.encode_audio(logmel), model.encode_image(features)
            loss = batch_loss(model, loss_fn, settings, audio, image, image_rows.numpy(), rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(image_rows)
        count += len(image_rows)
        after_step(epoch, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return total / count, count, seconds


# ---------------------------------------------------------------- validation


@dataclass
class EvalSet:
    """The validation captions and images evaluated (all, or a fixed sample of images)."""

    captions: np.ndarray  # caption indices into the split
    images: np.ndarray  # image rows into the split
    caption_image: np.ndarray  # column (into `images`) of each evaluated caption


def eval_set(data: SplitData, max_images: int, seed: int) -> EvalSet:
    n = data.n_images
    images = np.arange(n) if n <= max_images else np.sort(np.random.default_rng([seed, 7]).choice(n, max_images, replace=False))
    column = np.full(n, -1)
    column[images] = np.arange(len(images))
    captions = np.flatnonzero(column[data.caption_image] >= 0)
    return EvalSet(captions=captions, images=images, caption_image=column[data.caption_image[captions]])


@torch.no_grad()
def similarity_of_split(model: VGSModel, source: BatchSource, es: EvalSet, device: torch.device, batch: int = 256) -> np.ndarray:
    """Caption x image similarity matrix of the evaluated items (model in eval mode)."""
    model.eval()
    with autocast(device):
        audio = torch.cat([model.encode_audio(source.captions(es.captions[i:i + batch])) for i in range(0, len(es.captions), batch)])
        image = torch.cat([model.encode_image(source.images(es.images[i:i + batch])) for i in range(0, len(es.images), batch)])
        sim = model.similarity_matrix(audio, image)
    return sim.float().cpu().numpy()


def validation_loss(sim: np.ndarray, es: EvalSet, settings: TrainSettings, loss_fn: InfoNCE | None) -> float:
    """The training loss on the validation pairs, with impostors/batches fixed by the seed."""
    rng = np.random.default_rng([settings.seed, 11])
    cap_img = es.caption_image
    if settings.loss == "triplet_random":
        n = len(cap_img)
        pos = sim[np.arange(n), cap_img]
        imp_caption = draw_impostors(cap_img, rng)
        other_image = (cap_img + rng.integers(1, max(2, sim.shape[1]), size=n)) % sim.shape[1]
        loss = triplet_random(
            torch.from_numpy(pos), torch.from_numpy(sim[np.arange(n), other_image]),
            torch.from_numpy(sim[imp_caption, cap_img]), settings.margin,
            torch.from_numpy((imp_caption != np.arange(n)) & (other_image != cap_img)),
        )
        return float(loss)
    total, count = 0.0, 0
    with torch.no_grad():
        for b in cut_batches(epoch_order(cap_img, rng), settings.batch_size):
            block = torch.from_numpy(sim[np.ix_(b, cap_img[b])])
            rows = torch.from_numpy(cap_img[b])
            if settings.loss == "triplet_hardest":
                value = triplet_hardest(block, rows, settings.margin)
            else:
                value = infonce(block, rows, loss_fn.log_temperature.detach().float().cpu())
            total += float(value) * len(b)
            count += len(b)
    return total / count


def evaluate(
    model: VGSModel, loss_fn: InfoNCE | None, source: BatchSource, data: SplitData, es: EvalSet,
    settings: TrainSettings, device: torch.device, epoch: int,
) -> dict:
    sim = similarity_of_split(model, source, es, device)
    if not np.isfinite(sim).all():
        raise FloatingPointError(f"non-finite similarities at epoch {epoch}; lower train.lr")
    val_loss = validation_loss(sim, es, settings, loss_fn)
    full = full_split_retrieval(sim, es.caption_image)
    pooled = pooled_recall_at_10(
        sim, es.caption_image, settings.pool_size, settings.pool_trials, np.random.default_rng([settings.seed, epoch, 1])
    )
    return {"val_loss": val_loss, "full": full, "pooled": pooled}


def history_row(epoch: int, train_loss: float, n: int, seconds: float, val: dict, val_s: float, loss_fn) -> dict:
    full, pooled = val["full"], val["pooled"]
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["val_loss"]}
    for direction in ("a2i", "i2a"):
        for key in ("r1", "r5", "r10", "median_rank"):
            row[f"{key}_{direction}"] = full[direction][key]
    row.update({
        "pooled_r10_a2i": pooled["r10_a2i"], "pooled_r10_i2a": pooled["r10_i2a"], "pool_size": pooled["pool_size"],
        "temperature": loss_fn.temperature if loss_fn is not None else math.nan,
        "train_captions": n, "samples_per_s": n / seconds, "train_s": seconds, "val_s": val_s,
    })
    return row


def selection_value(row: dict, select_by: str) -> float:
    """Lower is better (recall is negated)."""
    if select_by == "val_loss":
        return row["val_loss"]
    return -(row["r10_a2i"] + row["r10_i2a"]) / 2


def plot_curves(history: list[dict], path: Path, chance: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(df["epoch"], df["train_loss"], "o-", label="train")
    ax_loss.plot(df["epoch"], df["val_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for column, label in (
        ("r10_a2i", "R@10 image from caption"), ("r10_i2a", "R@10 caption from image"),
        ("pooled_r10_a2i", "pooled R@10 a2i"), ("pooled_r10_i2a", "pooled R@10 i2a"),
    ):
        ax_rec.plot(df["epoch"], df[column], "o-" if column.startswith("r10") else "x--", label=label)
    ax_rec.axhline(chance["a2i"]["r10"], color="grey", lw=0.8, ls=":", label="chance R@10 a2i")
    ax_rec.axhline(chance["i2a"]["r10"], color="black", lw=0.8, ls=":", label="chance R@10 i2a")
    ax_rec.set(xlabel="epoch", ylabel="recall", title="validation retrieval", ylim=(0, 1))
    ax_rec.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- the run


def run_training(
    train_data: SplitData, val_data: SplitData, model_settings: ModelSettings, settings: TrainSettings,
    frames: FrameSettings, out_dir: str | Path, log=None,
) -> dict:
    """Train, validate each epoch, write the outputs; returns the retrieval summary."""
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    state_path = out_dir / "state" / "last.pt"
    check_splits_agree(train_data, val_data)
    for data in (train_data, val_data):
        check_frames(data, frames.max, frames.padding, frames.hop_s)
    device = pick_device(settings.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    shape = input_shape(train_data)
    torch.manual_seed(settings.seed)
    model = build_model(model_settings, shape).to(device)
    loss_fn = InfoNCE().to(device) if settings.loss == "infonce" else None
    parameters = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    optimizer = torch.optim.Adam(parameters, lr=settings.lr)
    history: list[dict] = []
    best = {"epoch": None, "value": math.inf}
    start_epoch = 1

    if settings.resume:
        resume_from = state_path if state_path.is_file() else out_dir / "checkpoint_last.pt"
        if resume_from.is_file():
            state = load_checkpoint(resume_from, model_settings.arch)
            model_from_checkpoint(state, resume_from, model_settings)  # refuses other settings
            if state["input_shape"] != shape.as_dict():
                raise InputError(resume_from, f"checkpoint input shape {state['input_shape']} differs from the shards' {shape.as_dict()}")
            if state["train_settings"]["loss"] != settings.loss:
                raise InputError(resume_from, f"checkpoint trained with loss {state['train_settings']['loss']!r}, config has {settings.loss!r}")
            model.load_state_dict(state["model_state"])
            if loss_fn is not None:
                loss_fn.load_state_dict(state["loss_state"])
            optimizer.load_state_dict(state["optimizer_state"])
            history, best = state["history"], state["best"]
            start_epoch = state["epoch"] + 1
            log(f"resuming from {resume_from} after epoch {state['epoch']}")
        else:
            log("train.resume is true but no checkpoint exists yet; starting from scratch")

    train_source = BatchSource(train_data, device)
    val_source = BatchSource(val_data, device)
    es = eval_set(val_data, settings.eval_max_images, settings.seed)
    chance = chance_levels(es.caption_image, len(es.images))
    log(
        f"device {device} ({train_source.mode}); train {train_data.n_captions} captions / {train_data.n_images} images, "
        f"validation {len(es.captions)} captions / {len(es.images)} images (of {val_data.n_images}); "
        f"input {shape.as_dict()}; {sum(p.numel() for p in model.parameters()):,} parameters"
    )

    def checkpoint(epoch: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "arch": model_settings.arch,
            "model_settings": dataclasses.asdict(model_settings), "train_settings": dataclasses.asdict(settings),
            "frames": dataclasses.asdict(frames), "input_shape": shape.as_dict(),
            "feature_attrs": {"audio": train_data.audio_attrs, "visual": train_data.visual_attrs},
            "epoch": epoch, "model_state": model.state_dict(),
            "loss_state": loss_fn.state_dict() if loss_fn is not None else {},
            "optimizer_state": optimizer.state_dict(), "history": history, "best": best,
        }

    for epoch in range(start_epoch, settings.epochs + 1):
        train_loss, n, seconds = train_one_epoch(model, loss_fn, optimizer, train_source, train_data, settings, epoch, device)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch}; lower train.lr")
        t0 = time.perf_counter()
        val = evaluate(model, loss_fn, val_source, val_data, es, settings, device, epoch)
        row = history_row(epoch, train_loss, n, seconds, val, time.perf_counter() - t0, loss_fn)
        history.append(row)
        value = selection_value(row, settings.select_by)
        is_best = value <= best["value"]
        if is_best:
            best = {"epoch": epoch, "value": value}
        state = checkpoint(epoch)
        save_checkpoint(state, state_path)
        save_checkpoint(state, out_dir / "checkpoint_last.pt")
        if is_best:
            save_checkpoint(state, state_path.with_name("best.pt"))
            save_checkpoint(state, out_dir / "checkpoint_best.pt")
        write_csv(pd.DataFrame(history), out_dir / "history.csv")
        plot_curves(history, out_dir / "curves.png", chance)
        log(
            f"epoch {epoch}/{settings.epochs}: train_loss {train_loss:.4f} val_loss {row['val_loss']:.4f} "
            f"R@10 a2i {row['r10_a2i']:.3f} i2a {row['r10_i2a']:.3f} (chance {chance['a2i']['r10']:.3f} / "
            f"{chance['i2a']['r10']:.3f}) pooled R@10 {row['pooled_r10_a2i']:.3f}/{row['pooled_r10_i2a']:.3f} "
            f"| {row['samples_per_s']:.1f} samples/s, train {seconds:.1f} s, val {row['val_s']:.1f} s"
            + (" *best*" if is_best else "")
        )

    # a resumed run that had nothing left to train restores the declared outputs from the state
    for name, source in (("checkpoint_last.pt", state_path), ("checkpoint_best.pt", state_path.with_name("best.pt"))):
        if not (out_dir / name).is_file():
            if not source.is_file():
                raise InputError(out_dir, f"no epoch was trained and {source} is missing; set train.resume: false")
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(source, tmp)
    if history:
        write_csv(pd.DataFrame(history), out_dir / "history.csv")
        plot_curves(history, out_dir / "curves.png", chance)
    # final figures from the best checkpoint
    best_state = load_checkpoint(out_dir / "checkpoint_best.pt", model_settings.arch)
    model.load_state_dict(best_state["model_state"])
    if loss_fn is not None:
        loss_fn.load_state_dict(best_state["loss_state"])
    val = evaluate(model, loss_fn, val_source, val_data, es, settings, device, best_state["epoch"])
    summary = {
        "split": val_data.name, "checkpoint": str(out_dir / "checkpoint_best.pt"), "best_epoch": best_state["epoch"],
        "select_by": settings.select_by, "epochs_trained": len(history), "arch": model_settings.arch,
        "similarity": model_settings.similarity if model_settings.arch == "matchmap" else "cosine",
        "n_captions": int(len(es.captions)), "n_images": int(len(es.images)), "n_images_in_split": int(val_data.n_images),
        "val_loss": val["val_loss"],
        "image_retrieval_from_captions": val["full"]["a2i"],
        "caption_retrieval_from_images": val["full"]["i2a"],
        "pooled_r10": val["pooled"],
        "chance": {"image_retrieval_from_captions": chance["a2i"], "caption_retrieval_from_images": chance["i2a"]},
    }
    write_json(summary, out_dir / "retrieval.json")
    return summary


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vgsalign train", description="Train a VGS model on feature shards.")
    p.add_argument("--train-audio", nargs="+", required=True, help="audio shards of the training split")
    p.add_argument("--train-visual", nargs="+", required=True, help="visual shards of the training split")
    p.add_argument("--val-audio", nargs="+", required=True, help="audio shards of the validation split")
    p.add_argument("--val-visual", nargs="+", required=True, help="visual shards of the validation split")
    p.add_argument("--train-split", default="train", help="name of the training split (for messages)")
    p.add_argument("--val-split", default="val", help="name of the validation split")
    p.add_argument("--model", required=True, help="the model config slice as JSON")
    p.add_argument("--train", dest="train_settings", required=True, help="the train config slice as JSON")
    p.add_argument("--frames", required=True, help="the frames config slice as JSON")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch, at most the CPUs this process may use (0: torch's default)")
    p.add_argument("--out-dir", required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    set_torch_threads(args.threads)
    model_settings = settings_from_json(ModelSettings, args.model, "--model")
    settings = settings_from_json(TrainSettings, args.train_settings, "--train")
    frames = settings_from_json(FrameSettings, args.frames, "--frames")
    train_data = load_split(args.train_split, args.train_audio, args.train_visual)
    val_data = load_split(args.val_split, args.val_audio, args.val_visual)
    summary = run_training(train_data, val_data, model_settings, settings, frames, args.out_dir)
    a2i, i2a = summary["image_retrieval_from_captions"], summary["caption_retrieval_from_images"]
    print(
        f"best epoch {summary['best_epoch']}: R@10 image from caption {a2i['r10']:.3f}, caption from image "
        f"{i2a['r10']:.3f} over {summary['n_images']} images", file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    from ..cli import run_main

    raise SystemExit(run_main("train", main))
