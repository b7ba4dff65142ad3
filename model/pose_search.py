"""Estimating the azimuth of a given X-ray in the generator's frame (upstream never did: the GAN is
unposed, so view 0 of a patient has no known azimuth). Renders the frozen generator at candidate
azimuths (and, optionally, several latents z) and keeps the one most similar (SSIM after min-max
normalisation) to the input."""
from __future__ import annotations

import torch

from umed_common.measures import minmax_signed, ssim

from .cameras import view_poses
from .generator import Generator, to_gray


def search_azimuth(generator: Generator, z: torch.Tensor, target: torch.Tensor, polar_deg: float,
                   radius: float, step_deg: float, chunk_rays: int = 8192, progress: bool = False,
                   azimuths: torch.Tensor | None = None) -> tuple[float, torch.Tensor, torch.Tensor]:
    """target (S, S) in [-1, 1] -> (best azimuth_deg, candidate azimuths (A,), SSIM scores (A,)).

    Candidates: every step_deg over the full turn, unless `azimuths` (A,) are given."""
    if azimuths is None:
        azimuths = torch.arange(0.0, 360.0, step_deg)
    poses = view_poses(azimuths, polar_deg, radius).to(z.device)
    with torch.no_grad():
        renders = to_gray(generator.render(z, poses, target.shape[-1], chunk_rays, progress, desc="pose search"))
    scores = ssim(minmax_signed(renders)[:, None], minmax_signed(target[None].to(renders))[:, None]
                  .expand(len(azimuths), -1, -1, -1), data_range=2.0)
    best = int(torch.argmax(scores))
    return float(azimuths[best]), azimuths, scores.cpu()


def search_latent_and_azimuth(generator: Generator, candidates: torch.Tensor, target: torch.Tensor,
                              polar_deg: float, radius: float, step_deg: float, azimuth_deg: float | None = None,
                              chunk_rays: int = 8192, progress: bool = False) -> tuple[int, float, torch.Tensor]:
    """candidates (N, Z), target (S, S) -> (index of the best z, its azimuth_deg, best SSIM per z (N,)).

    With azimuth_deg given only the latent is searched, at that azimuth."""
    fixed = None if azimuth_deg is None else torch.tensor([float(azimuth_deg)], dtype=torch.float64)
    found = [search_azimuth(generator, candidates[index:index + 1], target, polar_deg, radius, step_deg,
                            chunk_rays, progress, azimuths=fixed) for index in range(candidates.shape[0])]
    scores = torch.stack([candidate_scores.max() for _, _, candidate_scores in found])
    best = int(torch.argmax(scores))
    return best, found[best][0], scores
