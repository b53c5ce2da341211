"""What a run trains with, built once: the checked inputs, the frozen model with what learns put into it,
the images' latents and the optimizer (steps 1-3 of `amari.train.loop`).

What learns depends on the method: the placeholder's vectors spliced into the text encoder's token table
(ti), LoRA adapters on the UNet's attention and optionally the text encoder's (lora), or both, each with
its own learning rate (pivotal). The optimizer holds one parameter group per part, the token's first.
"""

from __future__ import annotations

import torch

from amari.errors import AmariError, UsageError
from amari.storage.layout import TrainLayout
from amari.train.config import TrainConfig, learning_rate
from amari.train.context import Log, Run, named_log
from amari.train.data import OBJECT_TEMPLATES, load_training_images, placeholder_prompt, to_pixels
from amari.train.groups import Group, GroupOptimizer
from amari.train.lora import LoraSpec, add_lora
from amari.train.model import freeze, load_components
from amari.train.resume import check_previous_run
from amari.train.scoring import Scoring
from amari.train.tokens import (
    GroupedPlaceholders,
    PlaceholderEmbedding,
    add_placeholder,
    init_vectors,
    splice,
    training_token,
    vector_tokens,
)


def prepare_run(config: TrainConfig, layout: TrainLayout, log: Log | None = None) -> Run:
    """Check the inputs, load and freeze the model, put in what learns, encode the images."""
    # 1. Inputs, checked before the model loads.
    accelerator = _accelerator(config)
    say = log if (log is not None and accelerator.is_main_process) else (lambda message: None)
    names, images = load_training_images(layout.data, config.resolution, config.center_crop)
    image_names = [path.name for path in names]
    check_previous_run(config, layout, image_names, accelerator.num_processes)
    templates = config.templates or OBJECT_TEMPLATES
    reference, face_encoder = _reference_group(config, accelerator)
    torch.manual_seed(config.seed)  # nothing should draw from it; this keeps any stray draw repeatable

    # 2. The frozen model, with the LoRA and the placeholder's vectors put in (the LoRA first: peft
    #    freezes every parameter it did not make).
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    components = load_components(config.model, config.model_config, weight_dtype, log=say)
    freeze(components, accelerator.device)
    if _gradient_checkpointing(config, accelerator, config.batch_size):
        components.unet.enable_gradient_checkpointing()
    spec = LoraSpec.of(config) if config.trains_lora else None
    lora_parameters = add_lora(components, spec, config.seed) if spec is not None else []

    tokenizer = components.tokenizer
    placeholder, ids = None, []
    if config.trains_token:
        token = training_token(config.token, tokenizer.get_vocab())
        table = components.text_encoder.get_input_embeddings().weight
        vectors = init_vectors(tokenizer, table, config.init_word, config.num_vectors)
        ids = add_placeholder(tokenizer, token, config.num_vectors)
        placeholder = splice(components.text_encoder, ids, vectors)
        words = vector_tokens(token, config.num_vectors)
    else:
        token = config.trigger
        words = [token]
    template_ids = _tokenize_templates(tokenizer, components.text_encoder, templates, words)

    # 3. The images' latent distributions, and the optimizer: one parameter group per part that learns.
    mean, std = encode_images(components.vae, images, accelerator.device, weight_dtype)
    groups = []
    if placeholder is not None:
        groups.append((learning_rate(config, accelerator.num_processes), [placeholder.vectors]))
    if lora_parameters:
        groups.append((learning_rate(config, accelerator.num_processes, config.unet_lr), lora_parameters))
    optimizer = make_optimizer([(config, lr, params) for lr, params in groups])
    # Each module that holds trainable weights is prepared (DDP with several processes, which averages its
    # gradients): a text encoder with a LoRA holds the placeholder too, so it is prepared whole.
    text_lora = spec is not None and bool(spec.text_encoder_targets)
    modules = [components.text_encoder] if text_lora else ([placeholder] if placeholder is not None else [])
    modules += [components.unet] if spec is not None else []
    *prepared, optimizer = accelerator.prepare(*modules, optimizer)
    trainable, text_encoder, unet = placeholder, components.text_encoder, components.unet
    if text_lora:
        text_encoder = prepared[0]
    elif placeholder is not None:
        trainable = prepared[0]
        components.text_encoder.set_input_embeddings(trainable)
    if spec is not None:
        unet = prepared[-1]
    say(_describe(config, spec, token, len(images), len(templates), [lr for lr, _ in groups], accelerator))
    return Run(
        config=config,
        layout=layout,
        accelerator=accelerator,
        components=components,
        placeholder=placeholder,
        trainable=trainable,
        optimizer=optimizer,
        token=token,
        placeholder_ids=ids,
        template_ids=template_ids,
        latent_mean=mean,
        latent_std=std,
        image_names=image_names,
        weight_dtype=weight_dtype,
        lr=groups[0][0],
        reference=reference,
        face_encoder=face_encoder,
        log=say,
        lrs=tuple(lr for lr, _ in groups),
        lora=spec,
        unet=unet,
        text_encoder=text_encoder,
        synced=tuple(prepared),
        scoring=Scoring(face_encoder, reference),
    )


def make_optimizer(parts: list[tuple[TrainConfig, float, list]]) -> torch.optim.AdamW:
    """AdamW with one parameter group per part: (the config whose betas, epsilon and weight decay it takes,
    its learning rate, its parameters)."""
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": lr,
                "betas": (config.adam_beta1, config.adam_beta2),
                "eps": config.adam_epsilon,
                "weight_decay": config.weight_decay,
            }
            for config, lr, params in parts
        ]
    )


def _describe(config: TrainConfig, spec, token: str, images: int, templates: int, lrs, accelerator) -> str:
    parts = [f"{images} images × {config.repeats} repeats, {templates} templates"]
    if config.trains_token:
        vectors = f"{config.num_vectors} vector{'s' * (config.num_vectors > 1)}"
        parts.append(f"token {token!r} ({vectors}, from {config.init_word!r})")
    else:
        parts.append(f"trigger {token!r}")
    text = ", ".join(parts)
    if spec is not None:
        where = "UNet" + (" and text encoder" if spec.text_encoder_targets else "")
        text += f"; LoRA rank {spec.rank}, alpha {spec.alpha:g} on the {where} ({', '.join(spec.unet_targets)})"
    rates = " and ".join(f"{lr:g}" for lr in lrs)
    return (
        f"{text}; lr {rates} on {accelerator.num_processes} process(es) [{accelerator.device}, "
        f"{accelerator.mixed_precision} mixed precision]"
    )


def _reference_group(config: TrainConfig, accelerator):
    """The reference group's face descriptors and a face encoder, on the main process only (which alone
    scores samples); a group that cannot be used stops every process, not only the main one."""
    if config.reference_group is None:
        return None, None
    encoder = reference = failure = None
    if accelerator.is_main_process:
        from amari.train.validation import reference_encoder, reference_group

        try:
            encoder = reference_encoder(config.reference_group)
            reference = reference_group(config.reference_group, encoder)
        except AmariError as exc:
            failure = exc
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = broadcast_object_list([None if failure is None else str(failure)])[0]
        if message is not None and failure is None:
            raise UsageError(message)
    if failure is not None:
        raise failure
    return reference, encoder


def _accelerator(config: TrainConfig):
    from accelerate import Accelerator

    on_cuda = torch.cuda.is_available() and not config.cpu
    precision = config.mixed_precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "no"
    if precision == "fp16" and not on_cuda:
        raise UsageError("--mixed-precision fp16 needs a CUDA GPU; use bf16 or no on the CPU")
    # One process may run several trainings (a whole study) with different precisions, and accelerate
    # keeps process-wide state that refuses such a change; the distributed setup itself is kept.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()
    if on_cuda:
        from amari.execution.devices import repeatable_kernels

        repeatable_kernels(config.deterministic)  # before cuBLAS starts: it reads its workspace setting once
    return Accelerator(mixed_precision=precision, cpu=not on_cuda)


def _gradient_checkpointing(config: TrainConfig, accelerator, samples: int) -> bool:
    """--gradient-checkpointing as given; by default on a GPU only when a step of `samples` images would
    not fit in the memory left once the model is loaded (checkpointing recomputes the UNet's forward pass,
    about a third more work)."""
    if config.gradient_checkpointing is not None:
        return config.gradient_checkpointing
    if accelerator.device.type != "cuda":
        return False
    from amari.execution.memory import free_bytes, needs_checkpointing

    return needs_checkpointing(free_bytes(str(accelerator.device)), samples, config.resolution)


def _tokenize_templates(tokenizer, text_encoder, templates, tokens: list[str]) -> torch.Tensor:
    prompts = [placeholder_prompt(template, tokens) for template in templates]
    length = min(tokenizer.model_max_length, text_encoder.config.max_position_embeddings)
    encoded = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return encoded.input_ids


@torch.no_grad()
def encode_images(vae, images, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE's latent distribution (mean, std) of every image and its mirror image, computed once.

    The encoder is deterministic, so drawing `mean + std × noise` per sample is exactly what encoding
    the image at every step would give, without running the encoder 15,500 times.
    """
    means, stds = [], []
    for rgb in images:
        pair_mean, pair_std = [], []
        for flip in (False, True):
            pixels = to_pixels(rgb, flip).unsqueeze(0).to(device=device, dtype=dtype)
            distribution = vae.encode(pixels).latent_dist
            pair_mean.append(distribution.mean[0].float())
            pair_std.append(distribution.std[0].float())
        means.append(torch.stack(pair_mean))
        stds.append(torch.stack(pair_std))
    return torch.stack(means), torch.stack(stds)


# Several groups in one run (`amari.train.together`) -------------------------------------------------


def prepare_runs(groups: list[Group], log: Log) -> tuple[list[Run] | None, object]:
    """Every group's `Run` over one frozen model, and the optimizer that holds every group's parameter
    group; (None, None) when the run has several processes."""
    # 1. Inputs, checked before the model loads: each group's images and earlier run, the references.
    first = groups[0].config
    accelerator = _accelerator(first)
    if accelerator.num_processes > 1:
        return None, None
    loaded = []
    for group in groups:
        names, images = load_training_images(group.layout.data, group.config.resolution, group.config.center_crop)
        check_previous_run(group.config, group.layout, [path.name for path in names], 1)
        loaded.append(([path.name for path in names], images))
    references: dict = {}
    for group in groups:
        folder = group.config.reference_group
        if folder not in references:
            references[folder] = _reference_group(group.config, accelerator)
    torch.manual_seed(first.seed)  # nothing should draw from it; this keeps any stray draw repeatable

    # 2. The frozen model once, and one placeholder per group under the same token ids.
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    components = load_components(first.model, first.model_config, weight_dtype, log=log)
    freeze(components, accelerator.device)
    if _gradient_checkpointing(first, accelerator, sum(group.config.batch_size for group in groups)):
        components.unet.enable_gradient_checkpointing()
    tokenizer, encoder = components.tokenizer, components.text_encoder
    token = training_token(first.token, tokenizer.get_vocab())
    vectors = init_vectors(tokenizer, encoder.get_input_embeddings().weight, first.init_word, first.num_vectors)
    ids = add_placeholder(tokenizer, token, first.num_vectors)
    table = encoder.get_input_embeddings()
    members = [PlaceholderEmbedding(table, ids, vectors.to(table.weight.device)) for _ in groups]
    grouped = GroupedPlaceholders(members)
    encoder.set_input_embeddings(grouped)
    templates = first.templates or OBJECT_TEMPLATES
    template_ids = _tokenize_templates(tokenizer, encoder, templates, vector_tokens(token, first.num_vectors))

    # 3. Each group's latents; one AdamW with a parameter group per group.
    rates = [learning_rate(group.config, 1) for group in groups]
    optimizer = accelerator.prepare(
        make_optimizer([(g.config, lr, [m.vectors]) for g, lr, m in zip(groups, rates, members)])
    )
    shared = dict(
        accelerator=accelerator,
        components=components,
        trainable=grouped,
        token=token,
        placeholder_ids=ids,
        template_ids=template_ids,
        weight_dtype=weight_dtype,
    )
    runs, scoring = [], None
    for index, (group, (image_names, images), member) in enumerate(zip(groups, loaded, members)):
        say = named_log(log, group.name)
        reference, face_encoder = references[group.config.reference_group]
        scoring = Scoring(face_encoder, reference, sharing=scoring)
        mean, std = encode_images(components.vae, images, accelerator.device, weight_dtype)
        say(
            _describe(group.config, None, token, len(images), len(templates), [rates[index]], accelerator)
            + f"; trained with {len(groups) - 1} other group{'s' * (len(groups) > 2)} in one batch"
        )
        own = dict(config=group.config, layout=group.layout, placeholder=member, latent_mean=mean, latent_std=std)
        runs.append(
            Run(
                **shared,
                **own,
                optimizer=GroupOptimizer(optimizer.optimizer, index),
                image_names=image_names,
                lr=rates[index],
                lrs=(rates[index],),
                reference=reference,
                face_encoder=face_encoder,
                log=say,
                scoring=scoring,
            )
        )
    return runs, optimizer
