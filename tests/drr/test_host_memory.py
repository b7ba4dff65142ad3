"""drr/host_memory.py: a numpy-allocated tensor is an ordinary writable CPU tensor of the asked type."""
from __future__ import annotations

import pytest
import torch

from drr import host_memory


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.int64])
def test_empty_has_the_asked_shape_type_and_is_writable(dtype):
    tensor = host_memory.empty((3, 5), dtype)
    assert tensor.shape == (3, 5) and tensor.dtype == dtype and tensor.device.type == "cpu"
    assert tensor.is_contiguous()
    tensor.fill_(2)
    assert int(tensor.sum()) == 30
