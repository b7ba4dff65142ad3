import torch

from model.config import DiscriminatorConfig
from model.discriminators import (GRAFDiscriminator, MedNeRFDiscriminator, augment, build_discriminator,
                                  crop_quadrants, head_weights)


def test_augmentations():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)        # [[0, 1], [2, 3]]
    assert augment(x, "flip_h")[0, 0].tolist() == [[2, 3], [0, 1]]
    assert augment(x, "flip_w")[0, 0].tolist() == [[1, 0], [3, 2]]
    assert augment(x, "rot90")[0, 0].tolist() == [[1, 3], [0, 2]]
    assert torch.equal(augment(x, "identity"), x)


def test_quadrant_crops():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).expand(4, -1, -1, -1)
    crops = crop_quadrants(x, torch.tensor([0, 1, 2, 3]))
    assert crops[0, 0].tolist() == [[0, 1], [4, 5]] and crops[3, 0].tolist() == [[10, 11], [14, 15]]


def test_mednerf_discriminator_heads_and_decoders():
    disc = MedNeRFDiscriminator(DiscriminatorConfig(width=8, recon_size=32), channels=3)
    x = torch.randn(3, 3, 32, 32)
    logits, (whole, quadrant) = disc(x, torch.tensor([0, 2, 3]))
    assert logits.shape == (3, 4) and whole.shape == (3, 3, 32, 32) and quadrant.shape == (3, 3, 32, 32)
    assert whole.abs().max() <= 1 and disc(x).shape == (3, 4)
    convs = [m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)       # spectral norm throughout
    assert torch.allclose(head_weights(4, 0.2 / 3), torch.tensor([1.0, 0.2 / 3, 0.2 / 3, 0.2 / 3]))


def test_graf_discriminator_channels_and_batch_independence():
    disc = GRAFDiscriminator(channels=3, patch_size=32)
    convs = [m for m in disc.net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [128, 256, 512, 1]
    x = torch.randn(4, 3, 32, 32)
    disc.eval()
    together = disc(x)
    alone = torch.cat([disc(x[i:i + 1]) for i in range(4)])
    assert together.shape == (4, 1) and torch.allclose(together, alone, atol=1e-5)   # no batch statistics
    assert isinstance(build_discriminator(DiscriminatorConfig(kind="graf"), 1, 32), GRAFDiscriminator)
