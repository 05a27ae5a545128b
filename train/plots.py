"""Plots a person would rather look at than read: training curves and the confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(
    history: list[dict[str, float]],
    path: Path,
    losses: dict[str, str] | None = None,
    metrics: dict[str, str] | None = None,
    metric_title: str = "top-1 accuracy",
    best_epoch: int | None = None,
) -> Path:
    """Losses and validation metrics per epoch; `losses`/`metrics` map history keys to legend labels.

    Every point carries a marker (a one-epoch run is a point, not an invisible line) and the best epoch, the one
    best.pt holds, is marked on both panels.
    """
    losses = losses or {"train_loss": "train", "val_loss": "val"}
    metrics = metrics or {"train_acc": "train", "val_acc": "val"}
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    style = {"marker": "o", "markersize": 3 if len(epochs) > 30 else 4}
    for key, label in losses.items():
        ax1.plot(epochs, [h[key] for h in history], label=label, **style)
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    for key, label in metrics.items():
        ax2.plot(epochs, [h[key] for h in history], label=label, **style)
    ax2.set(xlabel="epoch", ylabel=metric_title, title=metric_title.capitalize(), ylim=(0, 1.01))
    if best_epoch:
        for ax in (ax1, ax2):
            ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, class_names: list[str] | tuple[str, ...], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts in each cell."""
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.1 * n + 2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title or "Confusion matrix (validation)")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
