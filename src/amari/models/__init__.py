"""Models: where model files come from, how they are read safely, Stable Diffusion loading, a study's inventory.

The modules are imported by their full names; this package imports nothing, so that a light
module here never pulls in a heavy one."""
