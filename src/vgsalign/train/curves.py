"""curves.png: losses and validation recalls per epoch, with chance lines."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..atomic import atomic_path


def plot_curves(history: list[dict], path: Path, chance: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(df["epoch"], df["train_loss"], "o-", label="train")
    ax_loss.plot(df["epoch"], df["val_loss"], "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss per pair", title="loss")
    ax_loss.legend()
    for column, label in (
        ("r10_a2i", "R@10 image from caption"), ("r10_i2a", "R@10 caption from image"),
        ("pooled_r10_a2i", "pooled R@10 a2i"), ("pooled_r10_i2a", "pooled R@10 i2a"),
        ("pooled_meanpool_r10_a2i", "pooled R@10 a2i, mean-pooled outputs (original)"),
        ("pooled_meanpool_r10_i2a", "pooled R@10 i2a, mean-pooled outputs (original)"),
    ):
        style = "o-" if column.startswith("r10") else ("x--" if "meanpool" not in column else "+:")
        ax_rec.plot(df["epoch"], df[column], style, label=label)
    ax_rec.axhline(chance["a2i"]["r10"], color="grey", lw=0.8, ls=":", label="chance R@10 a2i")
    ax_rec.axhline(chance["i2a"]["r10"], color="black", lw=0.8, ls=":", label="chance R@10 i2a")
    ax_rec.set(xlabel="epoch", ylabel="recall", title="validation retrieval", ylim=(0, 1))
    ax_rec.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
