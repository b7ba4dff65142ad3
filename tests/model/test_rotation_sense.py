import numpy as np

from model.rotation_sense import best_match


def test_matches_the_sense_the_views_turn_in():
    rng = np.random.default_rng(0)
    turn = rng.normal(size=(72, 8, 8))
    views = {k: turn[(10 - k) % 72] for k in range(0, 72, 3)}   # DRR view k at azimuth 50 - 5k
    assert abs(best_match(turn, views, -1) - 1.0) < 1e-12
    assert best_match(turn, views, 1) < 0.5
