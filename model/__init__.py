"""UMedNeRF model: GRAF generator, MedNeRF discriminator, GAN training and single-view fine-tuning.

The public entry points other packages use live in `model.api`.
"""
