"""The FID Inception network (pytorch-fid's InceptionV3, pool3 features), loaded offline.

The architecture comes from the `pytorch-fid` package. Its constructor would
download the weights; we hand it the local file instead, so nothing is ever
fetched at run time and nothing falls back to random weights. Random weights
exist only through `random_inception_state_dict`, which tests and the timing
script call explicitly and label as such.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

import torch
import pytorch_fid.inception as fid_inception

from umed_common.checksums import sha256_file as file_sha256
from umed_common.errors import UserError

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_SHA256_PREFIX = "6726825d"  # torch.hub convention: the file name carries its hash prefix
WEIGHTS_ENV = "UMED_INCEPTION_WEIGHTS"
POOL3_BLOCK = fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]


def default_weights_path() -> Path:
    """$TORCH_HOME/hub/checkpoints/<file> (torch.hub's cache, where pytorch-fid would put it)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The weights file: `path`, else $UMED_INCEPTION_WEIGHTS, else the torch hub cache.

    UserError naming the file, where to put it and where it comes from when absent.
    """
    if path is None and os.environ.get(WEIGHTS_ENV):
        path = os.environ[WEIGHTS_ENV]
    candidate = Path(path).expanduser() if path is not None else default_weights_path()
    if candidate.is_file():
        return candidate
    raise UserError(
        f"FID Inception weights not found at {candidate}: put {WEIGHTS_FILENAME} there, or give its path "
        f"with --inception-weights / inception_weights: in the config / ${WEIGHTS_ENV}; it is the "
        f"pytorch-fid release file {fid_inception.FID_WEIGHTS_URL} (never downloaded by this project)")


def _build(state_dict_source) -> fid_inception.InceptionV3:
    """pytorch-fid's InceptionV3 (pool3 only) with its weight download replaced by `state_dict_source()`."""
    with mock.patch.object(fid_inception, "load_state_dict_from_url",
                           lambda *args, **kwargs: state_dict_source()):
        network = fid_inception.InceptionV3([POOL3_BLOCK], resize_input=True, normalize_input=True)
    return network.eval()


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of the FID architecture with RANDOM weights: for tests and timing only.

    Built by letting pytorch-fid assemble its network and then taking that
    network's own freshly initialised parameters in place of the download.
    """
    built = []
    original = fid_inception._inception_v3

    def recording_constructor(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    with mock.patch.object(fid_inception, "_inception_v3", recording_constructor):
        # The loader runs after pytorch-fid swapped in its FID blocks, so built[-1] is complete.
        _build(lambda: {k: v.clone() for k, v in built[-1].state_dict().items()})
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in built[-1].state_dict().items():
        if key.endswith("conv.weight"):
            # He-normal keeps activations alive through ~90 conv-BN-ReLU layers; PyTorch's
            # default init shrinks them until every image gives the same pool3 vector.
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        state[key] = value.clone()
    return state


def load_inception(weights_path: str | os.PathLike, device: torch.device | str = "cpu") -> fid_inception.InceptionV3:
    """The FID network with weights from a local file; UserError for a file that does not fit."""
    weights_path = Path(weights_path)
    try:
        state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or non-torch file
        raise UserError(f"{weights_path}: not a readable torch weights file ({err.__class__.__name__})") from None
    if not isinstance(state_dict, dict):
        raise UserError(f"{weights_path}: expected a state dict of the FID Inception network")
    try:
        network = _build(lambda: state_dict)
    except RuntimeError as err:
        first_line = str(err).splitlines()[0]
        raise UserError(f"{weights_path}: does not fit the FID Inception architecture ({first_line})") from None
    return network.to(device)


def describe_weights(weights_path: str | os.PathLike) -> dict:
    """Provenance of the weights file; warns on stderr when it is not the official FID file."""
    sha = file_sha256(weights_path)
    official = sha.startswith(WEIGHTS_SHA256_PREFIX)
    if not official:
        print(f"warning: {weights_path} is not the official FID Inception file (sha256 {sha[:12]}...); "
              "FID/KID values are not comparable with published ones", file=sys.stderr)
    return {"path": str(weights_path), "sha256": sha, "official_fid_weights": official}
