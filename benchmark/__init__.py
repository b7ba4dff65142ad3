"""The paper's benchmark: PSNR/SSIM, FID/KID and one runner per paper table.

renders + ground truth -> metrics (PSNR, SSIM, features -> FID, KID)
-> table runners (1, 2, 3) -> exports (CSV, Markdown, plots).
"""
