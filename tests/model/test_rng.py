"""The named random streams (model/rng.py)."""
import torch

from model import rng


def test_stream_ids_are_distinct():
    ids = {name: value for name, value in vars(rng).items() if name.startswith("STREAM_")}
    assert len(set(ids.values())) == len(ids), ids


def test_a_stream_is_a_pure_function_of_seed_and_keys():
    draw = lambda *keys: torch.rand(4, generator=rng.seeded_generator(*keys))  # noqa: E731
    assert torch.equal(draw(0, rng.STREAM_ITER, 5), draw(0, rng.STREAM_ITER, 5))
    assert not torch.equal(draw(0, rng.STREAM_ITER, 5), draw(0, rng.STREAM_ITER, 6))
    assert not torch.equal(draw(0, rng.STREAM_DATA), draw(0, rng.STREAM_INIT))
    assert not torch.equal(draw(0, rng.STREAM_DATA), draw(1, rng.STREAM_DATA))
