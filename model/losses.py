"""GAN losses (MedNeRF hinge with soft labels, GRAF non-saturating + R1) and the pixel MSE."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, soft_real: torch.Tensor,
                 soft_fake: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """MedNeRF's discriminator hinge with soft labels u ~ U[0.8, 1): relu(u - D(x)) + relu(u + D(G(z))).

    logits (B, K) per augmentation head, soft labels (B,), head weights (K,). Mean over the batch.
    """
    real = F.relu(soft_real[:, None] - real_logits)
    fake = F.relu(soft_fake[:, None] + fake_logits)
    return ((real + fake) * weights).sum(dim=1).mean()


def hinge_g_loss(fake_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Generator side of the hinge: -D(G(z)), weighted over heads, mean over the batch."""
    return (-fake_logits * weights).sum(dim=1).mean()


def nonsaturating_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """GRAF: BCE(D(x), 1) + BCE(D(G(z)), 0) = softplus(-D(x)) + softplus(D(G(z)))."""
    return (F.softplus(-real_logits) + F.softplus(fake_logits)).sum(dim=1).mean()


def nonsaturating_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """GRAF's non-saturating generator loss softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).sum(dim=1).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * E ||grad_x D(x)||^2 on real images (Mescheder et al. 2018); real_images must require grad."""
    grads, = torch.autograd.grad(real_logits[:, 0].sum(), real_images, create_graph=True)
    return 0.5 * gamma * grads.pow(2).flatten(1).sum(dim=1).mean()


def mse_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel (the paper's L_MSE)."""
    return (prediction - target).pow(2).mean()
