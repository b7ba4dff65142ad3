"""UMedNeRF model: GRAF generator, MedNeRF discriminator, GAN training and single-view fine-tuning.

The public entry points other packages (benchmark, demo) use live in `model.api`. One config schema
(`config`, fine-tuning options included), one render entry point (`generator.Generator.render`), camera
poses in `cameras`, the random streams in `rng`.
"""
