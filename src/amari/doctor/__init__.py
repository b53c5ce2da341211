"""`amari doctor`: is this machine set up for a study, are its models here, and how long will it take.

- `probes`: Python, torch, the GPU (memory, bf16/fp16), SDPA, dlib, disk space;
- `memory`: the GPU memory each model family needs to generate and to train, and whether the GPU has it;
- `plan`: the study to check (`find_study`) and what the timings and the estimate read from it
  (`plan_from_study`, the one place that reads a study config here);
- `timing`: one candidate timed through every mining stage, one training step per method, one evaluation
  image;
- `estimate`: from those times and the plan, the time to the target group size and to the whole study;
- `render`: the tables, for a terminal or as Markdown.

It sits above the stages it times (beside `amari.study`), and reads their configs' public fields only.
"""
