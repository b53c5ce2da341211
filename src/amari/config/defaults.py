"""Numbers of the original study that several stages share."""

# The Stable Diffusion model the study used, by its Hugging Face id.
DEFAULT_MODEL = "CompVis/stable-diffusion-v1-4"

# The study's evaluation seeds, commands sd1..sd5; training samples reuse them so that checkpoints are
# compared with the images the study judged.
STUDY_SEEDS = (335728730, 691007764, 1295044561, 2565311105, 1995053400)
STUDY_COMMANDS = tuple((f"sd{i}", seed) for i, seed in enumerate(STUDY_SEEDS, start=1))
