"""`amari doctor`: is this machine set up for a study, are its models here, and how long will it take.

- `probes`: Python, torch, the GPU (memory, bf16/fp16), SDPA, dlib, disk space;
- `plan`: the study settings the timings and the estimate read (`plan_from_study`, the one place
  that reads a study config here);
- `timing`: one candidate timed through every mining stage, one training step, one evaluation image;
- `estimate`: from those times and the plan, the time to the target group size and to the whole study.
"""
