"""The device memory a run needs, estimated before it starts; a run that would not fit its GPU is refused.

    total = 1.2 x (weights + training state + trajectories + the epoch's largest transient) + 1 GB

- **weights**: every parameter of the UNet (and a latent model's VAE and text encoder) at the dtype it is kept in:
  float32, or the autocast dtype (bf16/fp16: 2 bytes) for weights that never train (a LoRA run's base UNet, the
  VAE, the text encoder); full fine-tuning that needs the base model (KL penalty, window-only sampling, base start
  images) keeps a second float32 copy of the UNet;
- **training state**: the trainable parameters (the LoRA adapter's, or the whole UNet's) x 12 bytes (float32
  gradient and AdamW's two moments), plus the adapter's own float32 weights;
- **trajectories**: the epoch's recorded rollout states on the device: samples_per_epoch x (K + 1) x the sample's
  size x 4 bytes (divided among data-parallel processes);
- **transient**: the largest of one training call (``train_batch_size`` rows, doubled by guidance, whose forward
  activations are kept for the backward; with the KL penalty the base model's forward on top), one sampling call
  (``batch_size`` rows, doubled by guidance), one evaluation call (the model's ``eval_batch``) and one VAE decode.
  Activations are counted, not guessed: the UNet (and the VAE decoder) run once on PyTorch's meta device (shapes
  only: no memory, no weights, well under a second for SD 1.x) while a dispatch mode adds up the bytes of the live
  tensors; attention is counted as memory-efficient / flash attention keeps it (the outputs and log-sum-exp, not the
  tokens x tokens matrix). Under bf16/fp16 the meta run follows autocast's casts (:class:`_AutocastLike`): convolutions,
  linear layers and matrix products in half precision, norms and softmax in float32, and what follows them in the
  dtype PyTorch's promotion gives (SiLU after a GroupNorm: float32), so fp32 norm and SiLU activations are counted as
  they are kept. A LoRA run is measured with its adapter attached and the base frozen: the adapter's own activations
  are counted, and the inputs kept only for frozen weights' gradients are not;
- **1.2 x and 1 GB**: the caching allocator's fragmentation; the CUDA context and cuBLAS/cuDNN workspaces.

Accuracy: not yet measured on a GPU; ``bench/gpu_check.py`` prints this estimate beside the measured peak of its
Stable Diffusion case, and ``bench/README.md`` records the comparison. The estimate is meant to err high.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field

import torch

from hrf_core.config import TrainConfig

GB = 2**30
OVERHEAD_GB = 1.0
FRAGMENTATION = 1.2


@dataclass(frozen=True)
class MemoryEstimate:
    """A run's estimated peak device memory, by part (GB), and what the device has free (None: not a GPU)."""

    parts: dict[str, float]
    device: str
    free_gb: float | None = None
    transient: str = ""  # which call sets the transient peak
    suggestions: tuple[str, ...] = field(default=())

    @property
    def total_gb(self) -> float:
        return FRAGMENTATION * sum(self.parts.values()) + (OVERHEAD_GB if self.device.startswith("cuda") else 0.0)

    @property
    def fits(self) -> bool:
        return self.free_gb is None or self.total_gb <= self.free_gb

    def advice(self) -> str:
        """What to lower, settings as ``{field}`` placeholders (:class:`~hrf_core.settings.SettingError`'s)."""
        return ", or ".join(self.suggestions) or "lower {batch_size}"

    def line(self) -> str:
        """One line for the Train tab: the total, its largest parts, and the device's free memory; settings named in
        the page's words."""
        from hrf_core.settings import SettingError
        largest = sorted(self.parts.items(), key=lambda kv: -kv[1])[:3]
        detail = ", ".join(f"{name} {value:.1f}" for name, value in largest)
        where = f"{self.device} has {self.free_gb:.1f} GB free" if self.free_gb is not None else \
            "no GPU here: nothing is refused"
        verdict = "" if self.fits else f" — does not fit: {SettingError(self.advice()).sentence()}"
        total = f"about {self.total_gb:.1f} GB" if self.total_gb >= 0.1 else "under 0.1 GB"
        return f"Memory: {total} ({detail}; {where}){verdict}"


def release_cached() -> None:
    """Hand the CUDA caching allocator's unused blocks back to the driver (between jobs: the next job's check reads
    the device's free memory, which the cache of a finished job would hide); nothing without CUDA."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_memory(device: torch.device) -> tuple[float, float] | None:
    """(free GB, total GB) of a CUDA device; None for any other device."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info(device)
    return free / GB, total / GB


# ------------------------------------------------------------------------------------------ meta measurement
class _LiveBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Tracks the bytes of the live tensors ops create (views share their base's), and their peak."""

    _VIEWS = {"view", "_unsafe_view", "t", "transpose", "permute", "expand", "detach", "alias", "slice", "select",
              "split", "split_with_sizes", "chunk", "unsqueeze", "squeeze", "as_strided", "unflatten", "unbind",
              "reshape", "_reshape_alias", "lift_fresh"}

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._overloadpacket.__name__ in self._VIEWS:
            # below autograd a view has no ``_base``: it holds its base's tensor object, whose bytes stay live while
            # any view of them does (a linear layer's output is a view of its matrix product's)
            base = next((a for a in args if isinstance(a, torch.Tensor)), None)
            for view in torch.utils._pytree.tree_flatten(out)[0]:
                if isinstance(view, torch.Tensor) and base is not None:
                    view._hrf_base = base
            return out
        for tensor in torch.utils._pytree.tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor._base is None:
                size = tensor.numel() * tensor.element_size()
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._free, size)
        return out

    def _free(self, size: int) -> None:
        self.live -= size


class _FlashLikeAttention(torch.autograd.Function):
    """Attention as memory-efficient kernels store it: q, k, v, the output and the log-sum-exp (meta only)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = q.new_empty((*q.shape[:-1], v.shape[-1]))
        ctx.save_for_backward(q, k, v, out, q.new_empty(q.shape[:-1]))
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class _MetaAttnProcessor:
    """diffusers' ``AttnProcessor2_0`` with :class:`_FlashLikeAttention` in place of SDPA (meta modules only)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        spatial = hidden_states.ndim == 4
        if spatial:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        batch, heads = q.shape[0], attn.heads
        split = [x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2) for x in (q, k, v)]
        out = _FlashLikeAttention.apply(*split).transpose(1, 2).reshape(batch, -1, heads * split[2].shape[-1])
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class _AutocastLike(torch.overrides.TorchFunctionMode):
    """CUDA autocast's casts, applied above autograd on meta tensors (autocast itself ignores the meta device): the
    ops autocast runs in ``dtype`` get their floating inputs cast to it, the ones it runs in float32 get them cast
    up; every other op computes in the dtype its inputs promote to. The casts are recorded by autograd as autocast's
    are, so the tensors kept for the backward have the dtypes they have on a GPU."""

    HALF = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "matmul", "mm", "bmm", "baddbmm", "addmm",
            "scaled_dot_product_attention"}
    FLOAT = {"group_norm", "layer_norm", "softmax", "log_softmax", "norm", "cumsum", "exp", "log", "pow"}

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = self.dtype if name in self.HALF else torch.float32 if name in self.FLOAT else None
        if target is not None:
            def cast(x):
                return x.to(target) if isinstance(x, torch.Tensor) and x.is_floating_point() and \
                    x.dtype != target else x

            args = torch.utils._pytree.tree_map(cast, args)
            kwargs = torch.utils._pytree.tree_map(cast, kwargs)
        return func(*args, **kwargs)


def _count_attention_like_flash(module: torch.nn.Module) -> None:
    from diffusers.models.attention_processor import Attention

    for sub in module.modules():
        if isinstance(sub, Attention):
            sub.set_processor(_MetaAttnProcessor())


def _measure(fn, half: torch.dtype | None = None) -> float:
    """Peak live bytes (GB) of ``fn()`` on meta tensors; ``half``: with autocast's casts (:class:`_AutocastLike`)."""
    import contextlib

    mode = _LiveBytes()
    with _AutocastLike(half) if half is not None else contextlib.nullcontext(), mode:
        fn()
    return mode.peak / GB


@dataclass(frozen=True)
class _Architecture:
    """What the estimate reads of a model: parameter counts and per-row activations (GB, as the run keeps them)."""

    unet_params: int
    other_params: int  # VAE + text encoder
    lora_params: int
    sample_numel: int
    train_row: float  # one row's forward activations kept for the backward (in the run's precision)
    train_row_checkpointed: float
    infer_row: float  # one row's no-grad forward peak
    decode_row: float  # one latent's VAE decode peak (0: a pixel model)
    decode_batch: int = 0  # latents per decode call


def _meta_parts(model: str):
    """``model``'s networks on the meta device (:class:`~hrf_core.models.families.MetaParts`), built by its family from
    its configs; a registered model whose weights are not cached: the architecture its family knows it has."""
    from hrf_core.models.registry import config_folder, family_of

    family = family_of(model)
    try:
        folder = config_folder(model, download=False)  # the Train tab asks on every change: never a download
    except ValueError:
        if not family.knows(model):
            raise
        folder = None
    return family.meta_parts(model, folder)


@functools.lru_cache(maxsize=16)
def architecture(model: str, lora_rank: int, lora_targets: tuple[str, ...], half: torch.dtype | None = None
                 ) -> _Architecture:
    """Parameter counts and per-row activations of ``model`` (configs only; cached per model and setting): with a LoRA
    adapter of ``lora_rank`` (0: full fine-tuning) under autocast to ``half`` (None: float32), frozen weights kept
    in ``half`` as the trainer keeps them."""
    parts = _meta_parts(model)
    unet, vae = parts.unet, parts.decoder
    _count_attention_like_flash(unet)
    sample = (unet.config.in_channels, *_size(unet.config.sample_size))
    unet_params = sum(p.numel() for p in unet.parameters())
    lora_params = 0
    if lora_rank:
        from hrf_core.models.lora import add_lora

        add_lora(unet, lora_rank, float(lora_rank), lora_targets)  # the base frozen, the adapter trains
        lora_params = sum(p.numel() for p in unet.parameters() if p.requires_grad)  # peft's own layers, counted
    if half is not None:  # a LoRA run keeps its base in half; full fine-tuning's half copies are counted apart
        for parameter in unet.parameters():
            if not (lora_rank and parameter.requires_grad):
                parameter.data = parameter.data.to(half)

    def forward(rows: int):
        x = torch.zeros(rows, *sample, device="meta")
        t = torch.zeros(rows, dtype=torch.long, device="meta")
        return unet(x, t, **parts.inputs(rows)).sample

    unet.train()
    unet.disable_gradient_checkpointing()
    train_row = _measure(lambda: forward(1), half)
    if getattr(unet, "_supports_gradient_checkpointing", False):
        unet.enable_gradient_checkpointing()
        checkpointed = _measure(lambda: forward(1), half)
        unet.disable_gradient_checkpointing()
    else:
        checkpointed = train_row
    with torch.no_grad():
        infer_row = _measure(lambda: forward(1), half)
        decode_row = 0.0
        if vae is not None:
            _count_attention_like_flash(vae)
            dtype = half or torch.float32  # the trainer keeps the VAE in the autocast dtype and decodes in it
            for parameter in vae.parameters():
                parameter.data = parameter.data.to(dtype)
            decode_row = _measure(lambda: vae.decode(torch.zeros(1, *sample, device="meta", dtype=dtype)))
    return _Architecture(unet_params, parts.other_params, lora_params, int(torch.Size(sample).numel()), train_row,
                         checkpointed, infer_row, decode_row, parts.decode_batch)


def _size(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def estimate(config: TrainConfig, device: torch.device | None = None, world: int = 1) -> MemoryEstimate:
    """The peak memory ``config`` needs on ``device`` (default: the config's; "auto" on a machine without a GPU: the
    CPU), from its model's configs."""
    from hrf_core.models.registry import family_of, resolve_device

    device = device or (resolve_device(config.device) if config.device != "cuda" or torch.cuda.is_available()
                        else torch.device("cuda"))
    family = family_of(config.model)
    lora = family.trains_lora(config)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
    arch = architecture(config.model, config.lora_rank if lora else 0, tuple(config.lora_targets), half)
    weight_bytes = 2 if half is not None else 4
    cfg = 2 if config.guidance != 1 else 1
    parts = {"UNet weights": arch.unet_params * (weight_bytes if lora else 4) / GB}
    if arch.other_params:
        parts["VAE and text encoder"] = arch.other_params * weight_bytes / GB
    if lora:
        parts["adapter, its gradients and AdamW"] = arch.lora_params * 16 / GB
    else:
        parts["gradients and AdamW"] = arch.unet_params * 12 / GB
        if config.needs_frozen_base:
            parts["frozen base copy"] = arch.unet_params * 4 / GB
    parts["trajectories"] = config.samples_per_epoch / world * (config.num_steps + 1) * arch.sample_numel * 4 / GB
    row = arch.train_row_checkpointed if config.grad_checkpointing else arch.train_row
    eval_batch = family.eval_batch
    # full fine-tuning under autocast: the half copies of the float32 weights, made once per call and kept for the
    # backward (autocast's weight cache)
    copies = arch.unet_params * 2 / GB if half is not None and not lora else 0.0
    transients = {
        "training call": config.train_batch_size * cfg * (row + (arch.infer_row if config.kl_coef > 0 else 0))
        + copies,
        "sampling call": config.batch_size * cfg * arch.infer_row,
        "evaluation call": min(eval_batch, config.eval_samples) * cfg * arch.infer_row,
        "VAE decode": min(arch.decode_batch, config.batch_size) * arch.decode_row,
    }
    largest = max(transients, key=transients.get)
    parts[f"activations ({largest})"] = transients[largest]
    memory = device_memory(device)
    return MemoryEstimate(parts, str(device), memory[0] if memory else None, largest,
                          tuple(_suggestions(config, lora, largest, parts)))


def _suggestions(config: TrainConfig, lora: bool, largest: str, parts: dict) -> list[str]:
    """What to lower or turn on, the biggest saving first (setting names in ``{braces}``)."""
    activations = largest in ("training call",)
    out = []
    if activations and config.train_batch_size > 1:
        out.append(f"lower {{train_batch_size}} (now {config.train_batch_size})")
    if activations and not config.grad_checkpointing:
        out.append("turn on {grad_checkpointing}")
    if largest in ("sampling call", "VAE decode") and config.batch_size > 1:
        out.append(f"lower {{batch_size}} (now {config.batch_size})")
    if config.precision == "fp32":
        out.append("turn on {bf16}")
    if not lora and parts.get("gradients and AdamW", 0) > 1:
        out.append("train LoRA ({finetune} lora)")
    return out


def check_fits(config: TrainConfig, device: torch.device | None = None, world: int = 1) -> MemoryEstimate | None:
    """The estimate; a :class:`~hrf_core.settings.SettingError` (one line naming what to lower) when the run would
    not fit the GPU's free memory. Nothing is refused on a CPU."""
    from hrf_core.models.registry import resolve_device
    from hrf_core.settings import SettingError

    device = device or resolve_device(config.device)
    if device_memory(device) is None:  # a CPU run: nothing to compare with, nothing refused (and nothing built)
        return None
    found = estimate(config, device, world)
    if not found.fits:
        raise SettingError(f"this run needs about {found.total_gb:.1f} GB on {found.device}, which has "
                           f"{found.free_gb:.1f} GB free: {found.advice()}")
    return found
