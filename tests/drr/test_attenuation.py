"""HU -> mu per mm: Plastimatch's preprocess model after the HU window."""
import numpy as np

from drr.attenuation import AttenuationModel, hu_to_attenuation


def test_preprocess_model_hand_values_and_window():
    hu = np.array([-3000, -1000, -800, -799, 0, 1000, 3000], dtype=np.int16)
    expected = np.array([0, 0, 0, 0.022 * 0.201, 0.022, 0.044, 0.044], dtype=np.float32)
    np.testing.assert_allclose(hu_to_attenuation(hu), expected, rtol=1e-6)
    unclamped = hu_to_attenuation(hu, AttenuationModel(hu_min=None, hu_max=None))
    assert unclamped[-1] == np.float32(0.022 * 4)


def test_input_is_not_modified_and_float_input_works():
    hu = np.array([[-500.0, 2500.0]])
    out = hu_to_attenuation(hu)
    assert out.dtype == np.float32 and hu[0, 1] == 2500.0
    np.testing.assert_allclose(out, [[0.011, 0.044]], rtol=1e-6)


def test_strided_view_converts_like_its_contiguous_copy():
    """A flipped/transposed HU view (the pipeline hands one to skip a copy) gives the same mu, contiguous."""
    hu = np.random.default_rng(3).uniform(-1500, 2000, size=(6, 7, 8)).astype(np.float32)
    view = np.flip(np.transpose(hu, (0, 2, 1)), 1)
    mu = hu_to_attenuation(view)
    assert mu.flags.c_contiguous and np.array_equal(mu, hu_to_attenuation(np.ascontiguousarray(view)))
    assert np.array_equal(hu_to_attenuation(view.astype(np.int16)), hu_to_attenuation(view.astype(np.int16).astype(np.float32)))
