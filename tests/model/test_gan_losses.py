import torch
import torch.nn.functional as F

from model.discriminators import head_weights
from model.losses import (hinge_d_loss, hinge_g_loss, mse_loss, nonsaturating_d_loss, nonsaturating_g_loss,
                          r1_penalty)


def test_hinge_with_soft_labels_by_hand():
    weights = head_weights(4, 0.2 / 3)
    real = torch.tensor([[0.5, 2.0, -1.0, 0.0]])
    fake = torch.tensor([[-0.2, 0.3, -2.0, 1.0]])
    loss = hinge_d_loss(real, fake, torch.tensor([0.9]), torch.tensor([0.85]), weights)
    per_head = [max(0, 0.9 - r) + max(0, 0.85 + f) for r, f in zip(real[0].tolist(), fake[0].tolist())]
    expected = per_head[0] + 0.2 / 3 * sum(per_head[1:])
    assert abs(loss.item() - expected) < 1e-6
    assert abs(hinge_g_loss(fake, weights).item() - (0.2 - 0.2 / 3 * (0.3 - 2.0 + 1.0))) < 1e-6


def test_nonsaturating_losses():
    real, fake = torch.tensor([[1.5], [-0.5]]), torch.tensor([[0.2], [-3.0]])
    expected_d = (F.softplus(-real) + F.softplus(fake)).mean()
    assert torch.allclose(nonsaturating_d_loss(real, fake), expected_d)
    assert torch.allclose(nonsaturating_g_loss(fake), torch.log1p(torch.exp(-fake)).mean())
    assert abs(mse_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).item() - 5.0) < 1e-7


def test_r1_of_a_quadratic_discriminator():
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    x = torch.randn(4, 3, requires_grad=True)
    logits = (0.5 * w * x ** 2).sum(dim=1, keepdim=True)          # grad_x D = w * x
    penalty = r1_penalty(logits, x, gamma=10.0)
    expected = 5.0 * ((w * x) ** 2).sum(dim=1).mean()
    assert abs(penalty.item() - expected.item()) < 1e-5
    penalty.backward()        # differentiable (create_graph): the D step backpropagates through it
    assert torch.allclose(w.grad, 10.0 * w.detach() * (x.detach() ** 2).mean(dim=0), atol=1e-5)
