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
from umed_common.outputs import OutputFolder
from umed_common.protocol import view_file_name

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
    """views/xrayKKKK.png (drr-generate naming), contact_sheet.png, rotation.gif, history.csv, history.png.

    All or nothing: written into a staging folder inside `out_dir`, then moved in together
    (a full disk leaves the earlier outputs as they were). Only umed-finetune's own recorded
    files are replaced; a file of the user's with one of these names is refused, never replaced.
    """
    folder = OutputFolder(out_dir, "umed-finetune")
    with folder.staging() as stage:
        for index, view in enumerate(views):
            write_png(stage / "views" / view_file_name(index), view)
        write_png(stage / "contact_sheet.png", contact_sheet(views))
        write_bytes_atomic(stage / "rotation.gif", gif_bytes(views))
        write_text_atomic(stage / "history.csv", history.to_csv(index=False))
        write_bytes_atomic(stage / "history.png", history_plot_png(history))
        folder.commit(stage, replace_old=True)
