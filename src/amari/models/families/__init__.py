"""Model families (SD 1.x, SD 2.x, SDXL, FLUX.1), one module each, and the registry that tells them apart.

Each family says how to recognise its weights, its defaults, how to load it, how to train on it and how
to write its files; the rest of amari asks `amari.models.families.registry` (spandrel's pattern: the
weights decide the model, never its name). Like every core package, this one imports nothing itself.
"""
