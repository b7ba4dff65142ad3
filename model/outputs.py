"""Writing a fine-tuning result: 72 view PNGs, contact sheet, GIF, CSV history and a plot."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image

from umed_common.atomic import write_bytes_atomic, write_text_atomic
from umed_common.images import write_png

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend chosen first: no display needed)


def contact_sheet(views: np.ndarray, columns: int = 12) -> np.ndarray:
    """(V, H, W) uint8 -> one (rows * H, columns * W) uint8 mosaic, row-major by view index."""
    count, height, width = views.shape
    rows = -(-count // columns)
    sheet = np.zeros((rows * height, columns * width), dtype=np.uint8)
    for index, view in enumerate(views):
        r, c = divmod(index, columns)
        sheet[r * height:(r + 1) * height, c * width:(c + 1) * width] = view
    return sheet


def gif_bytes(views: np.ndarray, frame_ms: int = 80) -> bytes:
    frames = [Image.fromarray(view) for view in views]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()


def history_plot_png(history: pd.DataFrame) -> bytes:
    """Losses, learned sigmas, PSNR and SSIM against the fine-tuning step."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    x = history["iteration"]
    for column in ("loss", "loss_r", "loss_mse"):
        axes[0].plot(x, history[column], label=column)
    for column in ("sigma_1", "sigma_2"):
        axes[1].plot(x, history[column], label=column)
    axes[2].plot(x, history["psnr"])
    axes[3].plot(x, history["ssim"])
    for ax, title in zip(axes, ("losses", "learned sigma (L_r, L_MSE)", "input-view PSNR (dB)", "input-view SSIM")):
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_finetune_outputs(out_dir: Path, views: np.ndarray, history: pd.DataFrame) -> None:
    """views/xrayKKKK.png (drr-generate naming), contact_sheet.png, rotation.gif, history.csv, history.png."""
    for index, view in enumerate(views):
        write_png(out_dir / "views" / f"xray{index:04d}.png", view)
    write_png(out_dir / "contact_sheet.png", contact_sheet(views))
    write_bytes_atomic(out_dir / "rotation.gif", gif_bytes(views))
    write_text_atomic(out_dir / "history.csv", history.to_csv(index=False))
    write_bytes_atomic(out_dir / "history.png", history_plot_png(history))
