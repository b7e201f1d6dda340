"""The settings table: every field of :class:`~hrf_core.config.TrainConfig` declared once for every surface.

Each :class:`Setting` names its field and gives its label, help, kind, range or choices (with labels), and
where it appears: the page's form (``form``), the scripting API's ``/start`` and ``/duel`` (``api``), the
command line (``flag``) and the Runs table (``column``). Which methods read it comes from the method registry
(``Method.settings``). The page's form, the API's signatures, the CLI's flags and the Runs table's columns are
generated from this table, and every value is checked here, once: :func:`parse` for a value a person typed,
:func:`check` for a whole config (its fields, then the rules between them). A refusal is a
:class:`SettingError` that names the setting; each surface names it its own way (the page by its words, the
API by its parameter, the CLI by its flag).

A new setting is one field of TrainConfig plus one entry in :data:`TABLE`.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hrf_core.config import add_check

if TYPE_CHECKING:
    from hrf_core.config import TrainConfig

Naming = Callable[[str], str]


class SettingError(ValueError):
    """A refused value. ``template`` names settings as ``{field}`` placeholders; ``render(naming)`` writes them the
    caller's way; ``str()`` is the API's way (:meth:`named`)."""

    def __init__(self, template: str, page: str | None = None):
        self.template = template
        self.page = page  # the page's own wording, when it differs (a choice names its labels)
        self.names = [field for _, field, _, _ in string.Formatter().parse(template) if field]
        super().__init__(self.named())

    @property
    def setting(self) -> str | None:
        """The setting the message is first about."""
        return self.names[0] if self.names else None

    def render(self, naming: Naming) -> str:
        """The message with each setting named by ``naming(field)`` (e.g. :func:`flag`, :func:`words`)."""
        return self.template.format_map({name: naming(name) for name in self.names})

    def named(self) -> str:
        """As the scripting API writes it: ``parameter: message`` (a message about several parameters names each
        in place, by parameter name)."""
        names = set(self.names)
        if len(names) == 1 and not self.template.startswith("{" + self.names[0] + "}:"):
            return f"{self.names[0]}: {self.render(words)}"
        return self.render(lambda name: name)

    def sentence(self) -> str:
        """The message as the page writes it: settings named in words (a sentence that starts with one, capitalised)."""
        if self.page is not None:
            return self.page
        text = self.render(words)
        return text[:1].upper() + text[1:] if self.template.startswith("{") else text


@dataclass(frozen=True)
class Setting:
    """One setting of a run (a TrainConfig field) on every surface."""

    name: str
    label: str  # the page's label
    help: str  # one line: the CLI's help, the API's and the page's info
    kind: str = "float"  # int | float | text | choice | bool | window | clusters
    low: float | None = None
    high: float | None = None
    above_low: bool = False  # the value must be > low (not >= low)
    choices: dict[str, str] | Callable[[], dict[str, str]] | None = None  # value -> label
    flag: str | None = None  # the CLI flag; None: not on the command line
    form: str | None = None  # where the page shows it: "main", "advanced" or "number"; None: not on the page
    api: bool = False  # a parameter of /start and /duel
    column: str | None = None  # its column in the Runs table
    phrase: str | None = None  # how a sentence names it (default: its label)
    choose: str | None = None  # a choice's refusal on the page: "choose <choose>: <values>"

    def choice_labels(self) -> dict[str, str]:
        choices = self.choices() if callable(self.choices) else self.choices
        return dict(choices or {})

    @property
    def python_type(self) -> type:
        return {"int": int, "float": float, "bool": bool}.get(self.kind, str)

    @property
    def methods(self) -> list[str]:
        """The trainable methods that read this setting (every one, unless some method claims it)."""
        from hrf_core import methods

        claimed = [name for name in methods.trainable() if self.name in methods.METHODS[name].settings]
        return claimed or methods.trainable()


def _method_choices() -> dict[str, str]:
    from hrf_core import methods

    return {name: methods.METHODS[name].label for name in methods.trainable()}


START_MODES = {"uniform": "uniform in the window (per batch)", "fixed": "fixed at the window start"}
#: Which rewards an advantage is standardised against: the whole epoch, the sampling batch, or the B siblings
#: re-noised from the same trajectory-of-interest image (HRF's analogue of DDPO's per-prompt statistics; the
#: paper's code gets it from batch = B = 5). Rows started from pure noise share no image: under "image" they
#: are standardised per batch.
ADV_SCOPES = {"epoch": "the epoch", "batch": "its sampling batch", "image": "its re-noised image's siblings (HRF)",
              "prompt": "its prompt's recent rewards (ddpo-pytorch's per-prompt tracker)"}
GUIDANCE_GRADS = {"both": "both branches (ddpo-pytorch, TRL)", "cond": "the conditional branch only (Flow-GRPO)"}
START_SOURCES = {"policy": "the current policy", "base": "the frozen base model"}
#: What samples the steps before a windowed run's window: the fine-tuned network ("tuned", the paper's HRF: one
#: shared network at every step) or the frozen base model ("base": window-only sampling, so the steps the run
#: never trained stay the base model's; see docs/METHOD.md, "Window-only sampling").
OUTSIDE_WINDOW = {"tuned": "the fine-tuned network (the paper's HRF)",
                  "base": "the base model (window-only: untrained steps stay the base model's)"}

#: What trains. LoRA: peft adapters (hrf_core.models.lora), the base frozen; full: every weight of the UNet.
FINETUNE = {"auto": "auto (LoRA on a text-to-image model)", "lora": "LoRA adapters", "full": "every weight"}

S = Setting
#: Every TrainConfig field, in the order the page and the API list them.
TABLE: dict[str, Setting] = {s.name: s for s in (
    S("model", "Base model", "registry name, Hub id or local diffusers folder", kind="text", flag="--model",
      phrase="a base model", form="main", api=True, column="model"),
    S("reward", "Reward", "a registered reward (ink, symmetry, digit:<d>, jpeg-compressibility, ...) or your own "
      "function of images in [-1, 1] (N, C, H, W) -> (N,) floats, as path/to/file.py:function or module:function",
      kind="text", flag="--reward", phrase="a reward", form="main", api=True, column="reward"),
    S("method", "Method", "which denoising steps are trained", kind="choice", choices=_method_choices,
      choose="a method", flag="--method", form="main", api=True, column="method"),
    S("window", "Window", "the HRF window START:END over DDIM step indices 0..K (0 = pure noise)", kind="window",
      flag="--window", form="main", api=True),
    S("start_mode", "HRF start step", "HRF start: uniform in the window per batch (the paper's HRF), or the "
      "window start (the reviewers' re-noised-start ablation)", kind="choice", choices=START_MODES,
      choose="a start mode", flag="--start-mode", form="main", api=True),
    S("adv_scope", "Advantage baseline: standardise each reward against", "standardise advantages per epoch, per "
      "batch, or per re-noised image (HRF)", kind="choice", choices=ADV_SCOPES, choose="an advantage baseline",
      phrase="the advantage baseline", flag="--adv-scope",
      form="advanced", api=True),
    S("outside_window", "Steps before the window sample with", "what samples the steps before the window: tuned "
      "(the fine-tuned network, the paper's HRF) or base (window-only: the frozen base model, in training, "
      "evaluation and checkpoint sampling)", kind="choice", choices=OUTSIDE_WINDOW,
      choose="what samples the steps before the window", phrase="sampling the steps before the window with",
      flag="--outside",
      form="advanced", api=True),
    S("epochs", "Epochs", "training epochs", kind="int", low=1, high=1000, flag="--epochs", form="number", api=True,
      column="epochs"),
    S("samples_per_epoch", "Samples per epoch", "samples per epoch", kind="int", low=2, high=4096, flag="--samples",
      phrase="samples per epoch",
      form="number", api=True),
    S("batch_size", "Batch", "sampling batch (one start step per batch)", kind="int", low=1, high=1024,
      flag="--batch-size", form="number", api=True, phrase="the batch"),
    S("siblings", "Siblings per image (B)", "re-noised copies per trajectory-of-interest image", kind="int", low=1,
      high=256, flag="--siblings", form="number", api=True, phrase="the siblings per image"),
    S("num_steps", "DDIM steps K", "DDIM steps K", kind="int", low=2, high=1000, flag="--steps", form="number",
      api=True),
    S("lr", "Learning rate", "AdamW learning rate", low=1e-9, high=0.1, flag="--lr", form="number", api=True),
    S("clip_range", "PPO clip range", "PPO clip range", low=1e-8, high=1.0, flag="--clip-range", form="number",
      api=True),
    S("adv_clip", "Advantage clip", "advantage clip", low=0.01, high=100.0, flag="--adv-clip", form="number",
      api=True),
    S("seed", "Seed", "random seed", kind="int", low=0, high=2**31 - 1, flag="--seed", form="number", api=True),
    S("eval_every", "Evaluate every (epochs)", "evaluate every N epochs", kind="int", low=1, high=1000,
      flag="--eval-every", form="number", api=True),
    S("eval_samples", "Evaluation samples", "evaluation samples (fixed seed)", kind="int", low=2, high=4096,
      flag="--eval-samples", form="number", api=True),
    S("kl_coef", "KL penalty to the base (DPOK; 0 = off)", "KL penalty to the frozen base model (DPOK), nats per "
      "pixel per trained step (0: off)", low=0.0, high=1000.0, flag="--kl-coef", form="number", api=True),
    S("diversity_weight", "Diversity weight λ (0 = off)", "weight of the diversity bonus in the advantage: each "
      "sample's leave-one-out contribution to its group's Vendi score, standardised within the group (0: off)",
      low=0.0, high=100.0, flag="--diversity-weight", form="number", api=True, phrase="the diversity weight"),
    S("prompts", "Prompts", "the prompt set of a prompted model; each sample draws one, uniformly (a class-conditional "
      "model: its classes, e.g. 3,7,8; a text-to-image model: any text, or a named set: @animals, "
      "@imagenet-animals; several prompts: separated by commas, or one per line; empty: an "
      "unconditional model)", kind="prompts", flag="--prompts", form="main", api=True, column="prompts"),
    S("guidance_grad", "Guided log-prob's gradient through", "with guidance != 1: the gradient flows through both "
      "branches of the guided eps (ddpo-pytorch, TRL) or the conditional one only (cond: Flow-GRPO)", kind="choice",
      choices=GUIDANCE_GRADS, choose="the branches the gradient flows through", flag="--guidance-grad",
      form="advanced", api=True),
    S("guidance", "Guidance scale", "classifier-free guidance scale w in eps_u + w (eps_c - eps_u) (1: the conditional "
      "model, one UNet call a step)", low=0.0, high=30.0, flag="--guidance", form="number", api=True),
    S("prompt_buffer", "Per-prompt buffer", "adv_scope prompt: the recent rewards kept per prompt", kind="int", low=1,
      high=100_000, flag="--prompt-buffer", form="number", api=True),
    S("prompt_min_count", "Per-prompt minimum count", "adv_scope prompt: a prompt's own statistics once it has this "
      "many rewards (before: the epoch's)", kind="int", low=1, high=100_000, flag="--prompt-min-count",
      form="number", api=True),
    S("clusters", "Clusters", "HRF sliding cluster START:ENDxEPOCHS (repeat; the page makes two from its window)",
      kind="clusters", flag="--cluster"),
    S("start_source", "Start images from", "trajectory-of-interest images from the current policy or the frozen "
      "base model", kind="choice", choices=START_SOURCES, flag="--start-source"),
    S("hrfd_stride", "HRF-D candidate stride", "HRF-D: a candidate start every N steps", kind="int", low=1, high=1000),
    S("hrfd_beta", "HRF-D distance weight", "HRF-D: the weight of the distance term in the score", low=0, high=1e6),
    S("hrfd_probe_images", "HRF-D probe images", "HRF-D: images probed per estimate", kind="int", low=1, high=4096),
    S("hrfd_every", "HRF-D every (epochs)", "HRF-D: re-estimate the start every N epochs", kind="int", low=1,
      high=10**6),
    S("eta", "DDIM eta", "DDIM eta of the policy (1 = DDPM-like; 0 has no log-prob)", low=0, high=10,
      above_low=True),
    S("weight_decay", "Weight decay", "AdamW weight decay", low=0, high=1),
    S("adam_betas", "Adam betas", "AdamW betas", kind="pair"),
    S("window_scaled_clip", "Window-scaled clips", "scale both clips by (K - start) / K (the paper's HRF clipping)",
      kind="bool", flag="--window-scaled-clip"),
    S("max_grad_norm", "Gradient-norm clip", "clip the gradient norm to this", low=0, high=1e6, above_low=True),
    S("inner_epochs", "Inner epochs", "passes over an epoch's samples", kind="int", low=1, high=1000),
    S("updates_per_epoch", "Updates per epoch", "optimiser steps per epoch", kind="int", low=1, high=10**6,
      flag="--updates"),
    S("train_batch_size", "Training batch", "(sample, step) rows per forward+backward UNet call (gradients "
      "accumulate over the calls of an update: samples per update = samples per epoch / updates per epoch)",
      kind="int", low=1, high=10**6, flag="--train-batch-size", form="number", api=True, phrase="the training batch"),
    S("eval_seed", "Evaluation seed", "the evaluation set's noise seed", kind="int", low=0, high=2**63 - 1),
    S("eval_eta", "Evaluation eta", "DDIM eta of the evaluation samples", low=0, high=10),
    S("checkpoint_every", "Checkpoint every (epochs)", "checkpoint every N epochs (the last is always saved)",
      kind="int", low=1, high=10**6, flag="--checkpoint-every"),
    S("device", "Device", "auto (cuda, then cpu), cpu or cuda[:N]", kind="text", flag="--device"),
    S("bf16", "bf16", "bf16 autocast for the UNet in sampling and training (measure its drift: bench/gpu_check.py); "
      "with LoRA the frozen weights are kept in bf16, the adapter in fp32", kind="bool", flag="--bf16",
      form="advanced", api=True),
    S("fp16", "fp16", "fp16 autocast with loss scaling, for GPUs without bf16; with LoRA the frozen weights are kept "
      "in fp16, the adapter in fp32", kind="bool", flag="--fp16", form="advanced", api=True),
    S("grad_checkpointing", "Gradient checkpointing", "recompute the UNet's activations in the backward: less "
      "memory, slower updates", kind="bool", flag="--grad-checkpointing", form="advanced", api=True),
    S("finetune", "Fine-tune", "what trains: LoRA adapters (peft), every weight (full), or auto (LoRA on a "
      "text-to-image model, every weight otherwise)", kind="choice", choices=FINETUNE, choose="what to fine-tune",
      flag="--finetune", form="advanced", api=True),
    S("lora_rank", "LoRA rank", "LoRA rank r (TRL and ddpo-pytorch: 4)", kind="int", low=1, high=1024,
      flag="--lora-rank", form="number", api=True),
    S("lora_alpha", "LoRA alpha", "LoRA alpha: the update is scaled by alpha / r (TRL: 4)", low=0, high=10_000,
      above_low=True, flag="--lora-alpha", form="number", api=True),
    S("lora_targets", "LoRA targets", "the UNet's linear layers that get an adapter, by name, separated by commas "
      "(TRL: to_k,to_q,to_v,to_out.0: every attention projection)", kind="modules", flag="--lora-targets", api=True),
    S("eval_embeddings", "Evaluation embeddings", "the embeddings diversity is measured on (empty: the best "
      "available; a run records the ones it used)", kind="names"),
    S("extra", "Notes", "free-form notes (e.g. the experiment's arm)", kind="dict"),
)}
del S


def words(name: str) -> str:
    """How the page's sentences name a setting ("the batch")."""
    setting = TABLE.get(name)
    return (setting.phrase or setting.label) if setting is not None else name


def flag(name: str) -> str:
    """How the command line names a setting (its flag)."""
    setting = TABLE.get(name)
    return setting.flag if setting is not None and setting.flag else name


def on(surface: str) -> list[Setting]:
    """The settings a surface shows, in table order: "form" (the page), "api", "cli" or "column"."""
    keep = {"form": lambda s: s.form, "api": lambda s: s.api, "cli": lambda s: s.flag, "column": lambda s: s.column}
    return [s for s in TABLE.values() if keep[surface](s)]


def form_numbers() -> list[str]:
    """The page's numeric fields, in order."""
    return [s.name for s in TABLE.values() if s.form == "number"]


# ------------------------------------------------------------------------------------------- values
def parse_window(text: Any, num_steps: int) -> tuple[int, int]:
    """``"20:40"`` (or (20, 40)) -> (20, 40), checked against K = ``num_steps``; SettingError naming the window
    (the page's words speak of the widget's handles)."""
    try:
        if isinstance(text, (list, tuple)):
            start, end = (int(v) for v in text)
        else:
            start, end = (int(float(v)) for v in str(text).split(":"))
    except (TypeError, ValueError):
        raise SettingError(f"{{window}} must look like START:END (e.g. 20:40), got {text!r}",
                           page=f"window must look like START:END (e.g. 20:40), got {text!r}") from None
    if start == end:
        raise SettingError(f"{{window}} {start}:{end} is empty: its start must come before its end",
                           page=f"the window {start}:{end} is empty: drag the two handles apart")
    if start > end:
        raise SettingError(f"{{window}} {start}:{end} is inverted: its start must come before its end",
                           page=f"the window {start}:{end} is inverted: the start must come before the end")
    if start < 0 or end > num_steps:
        raise SettingError(f"{{window}} {start}:{end} must lie within steps 0..{num_steps} (K = {num_steps})",
                           page=f"the window {start}:{end} must lie within steps 0..{num_steps} (K = {num_steps})")
    return start, end


def format_window(window: tuple[int, int]) -> str:
    return f"{int(window[0])}:{int(window[1])}"


def fit_window(text: Any, num_steps: int) -> tuple[int, int]:
    """The window ``text`` clamped into steps 0..K (non-empty); unparsable text gives the late half."""
    try:
        start, end = (int(float(v)) for v in str(text).split(":"))
    except (TypeError, ValueError):
        start, end = num_steps // 2, num_steps
    end = min(max(end, 1), num_steps)
    return min(max(start, 0), end - 1), end


def parse_prompts(value: Any) -> tuple[str, ...]:
    """A prompt set: "3,7,8", one prompt per line, or a list; each stripped, none empty, none twice. An entry
    ``@name`` is a named set (:mod:`hrf_core.models.prompt_sets`: ``@animals``, ``@imagenet-animals``), expanded
    here: a run's config holds the prompts themselves."""
    from hrf_core.models import prompt_sets

    if isinstance(value, str):
        parts = value.splitlines() if "\n" in value.strip() else value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        raise SettingError(f"{{prompts}} must be text (3,7,8, or one prompt per line) or a list, got {value!r}")
    expanded: list[str] = []
    for part in parts:
        if prompt_sets.is_set_name(part):
            try:
                expanded.extend(prompt_sets.expand(part))
            except ValueError as error:
                raise SettingError(f"{{prompts}}: {error}") from None
        else:
            expanded.append(part)
    prompts = tuple(p.strip() for p in expanded if p.strip())
    repeated = [p for i, p in enumerate(prompts) if p in prompts[:i]]
    if repeated:
        raise SettingError(f"{{prompts}} name {repeated[0]!r} twice")
    return prompts


def format_prompts(prompts: tuple[str, ...]) -> str:
    """A prompt set as the page's field shows it: a named set's ``@name``, else commas, or one per line when a prompt
    holds a comma."""
    from hrf_core.models.prompt_sets import set_name_of

    named = set_name_of(tuple(prompts)) if prompts else None
    if named:
        return named
    return ("\n" if any("," in p for p in prompts) else ",").join(prompts)


def parse_modules(value: Any) -> tuple[str, ...]:
    """Module names ("to_k,to_q" or a list): each a dotted name, none twice, at least one."""
    import re

    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value] if isinstance(
        value, (list, tuple)) else None
    if parts is None:
        raise SettingError(f"{{lora_targets}} must be module names separated by commas, got {value!r}")
    names = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", n)]
    if not names or bad:
        raise SettingError(f"{{lora_targets}} must name modules such as to_k,to_q,to_v,to_out.0, got {value!r}")
    return names


def parse_cluster(text: str) -> tuple[int, int, int]:
    """``"0:20x10"`` -> (0, 20, 10): window 0:20 for 10 epochs."""
    try:
        window, epochs = str(text).split("x")
        start, end = (int(v) for v in window.split(":"))
        return start, end, int(epochs)
    except ValueError:
        raise SettingError(f"{{clusters}} must look like START:ENDxEPOCHS, got {text!r}") from None


def parse(name: str, value: Any) -> Any:
    """The value of setting ``name`` from what a person typed (a number, text, a choice, "20:40"), checked;
    SettingError naming it otherwise. Windows are checked against K by :func:`check`."""
    setting = TABLE[name]
    placeholder = "{" + name + "}"
    if setting.kind in ("int", "float"):
        if value is None or (isinstance(value, str) and not value.strip()):
            raise SettingError(f"{placeholder} is empty")
        if isinstance(value, bool):
            raise SettingError(f"{placeholder} must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise SettingError(f"{placeholder} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise SettingError(f"{placeholder} must be a finite number, got {value!r}")
        if setting.kind == "int":
            if number != int(number):
                raise SettingError(f"{placeholder} must be a whole number, got {value!r}")
            number = int(number)
        low, high = setting.low, setting.high
        if (low is not None and (number < low or (setting.above_low and number == low))) or \
                (high is not None and number > high):
            span = f"between {low:g} and {high:g}" if not setting.above_low else f"above {low:g} and at most {high:g}"
            raise SettingError(f"{placeholder} must be {span}, got {value!r}")
        return number
    if setting.kind == "choice":
        allowed = setting.choice_labels()
        if value not in allowed:
            shown = list(allowed.values()) if name == "method" else list(allowed)
            raise SettingError(f"{placeholder}: {value!r} is not allowed; choose one of {', '.join(allowed)}",
                               page=f"choose {setting.choose}: {', '.join(shown)}" if setting.choose else None)
        return value
    if setting.kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise SettingError(f"{placeholder} is empty", page=f"choose {words(name).lower()}" if name in
                               ("model", "reward") else None)
        return value.strip()
    if setting.kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(f"{placeholder} must be true or false, got {value!r}")
        return value
    if setting.kind == "window":
        if isinstance(value, str):
            start, end = parse_window(value, 10**9)
            return (start, end)
        return tuple(int(v) for v in value)
    if setting.kind == "prompts":
        return parse_prompts(value)
    if setting.kind == "modules":
        return parse_modules(value)
    if setting.kind == "clusters":
        return tuple(parse_cluster(c) if isinstance(c, str) else tuple(int(v) for v in c) for c in value)
    return value


def check(config: TrainConfig) -> None:
    """Every setting of ``config`` (its range or choices), then the rules between them and its method's own;
    SettingError (one line, naming the setting) for the first problem."""
    from hrf_core import methods

    for setting in TABLE.values():
        if setting.kind in ("int", "float", "choice", "bool", "text") and setting.name not in ("model", "reward",
                                                                                            "device"):
            parse(setting.name, getattr(config, setting.name))

    def rule(ok: bool, template: str) -> None:
        if not ok:
            raise SettingError(template)

    method = methods.get(config.method)
    method.validate(config, rule)
    rule(config.outside_window == "tuned" or method.windowed,
         f"{{outside_window}} 'base' needs a windowed method: {method.label} trains every step, so nothing is "
         "outside its window")
    rule(config.adv_scope != "image" or (method.windowed and config.siblings >= 2),
         "{adv_scope} 'image' needs re-noised siblings (an HRF method with {siblings} >= 2)")
    rule(config.diversity_weight == 0 or config.adv_scope != "image" or config.siblings >= 3,
         "{diversity_weight} with {adv_scope} 'image' needs {siblings} >= 3: the bonus compares each image's "
         "siblings, and in a group of two both add the same")
    rule(config.adv_scope != "prompt" or config.prompted,
         "{adv_scope} 'prompt' needs {prompts}: per-prompt statistics need a prompted run")
    rule(config.guidance == 1 or config.prompted, "{guidance} needs {prompts}: an unconditional model has nothing "
                                                  "to guide towards")
    n, p = config.eval_samples, len(config.prompts)
    # a large set (e.g. @imagenet-animals) is evaluated on an evenly spread subset (hrf_core.rl.sampling.eval_prompts)
    rule(not p or n >= 2 * min(p, 2), f"{{eval_samples}} ({n}) must give {min(p, 2)} of the {{prompts}} at least 2 "
                                      "samples each")
    rule(not (config.bf16 and config.fp16), "{bf16} and {fp16} exclude each other: choose one")
    parse("lora_targets", config.lora_targets)
    s, b, sib = config.samples_per_epoch, config.batch_size, config.siblings
    rule(b <= s, f"{{batch_size}} ({b}) cannot exceed {{samples_per_epoch}} ({s})")
    rule(s % b == 0, f"{{samples_per_epoch}} ({s}) must be a multiple of {{batch_size}} ({b})")
    rule(b % sib == 0, f"{{batch_size}} ({b}) must be a multiple of {{siblings}} ({sib})")


add_check(check)  # TrainConfig.validate() runs it (the config imports nothing above it)


def from_values(values: dict[str, Any], base: TrainConfig, none_is_empty: bool = False) -> TrainConfig:
    """The config a form describes (the page's, or the API's parameters): ``values`` by setting name, each parsed
    (None: ``base``'s value; with ``none_is_empty``, as on the page, a field left empty); ``window`` is the window
    selector's "start:end", applied the method's way
    (:meth:`~hrf_core.methods.base.Method.from_form`: DDPO ignores it, HRF sliding splits it in two clusters).
    Checked: SettingError (one line, naming the setting) for the first problem."""
    from hrf_core import methods

    changes = {name: parse(name, value) for name, value in values.items()
               if (value is not None or none_is_empty) and name != "window"}
    config = base.replace(**changes)
    method = methods.get(config.method)
    window = values.get("window")
    span = parse_window(window, config.num_steps) if window is not None else method.form_window(config)
    config = method.from_form(config, span)
    check(config)
    return config


def to_values(config: TrainConfig, surface: str = "form") -> dict[str, Any]:
    """The values of ``config``'s settings on a surface ("form" or "api"), the window as "start:end" the way the
    window selector shows it and the prompts as text (inverse of :func:`from_values`)."""
    from hrf_core import methods

    values = {s.name: getattr(config, s.name) for s in on(surface)}
    values["window"] = format_window(methods.get(config.method).form_window(config))
    values["prompts"] = format_prompts(config.prompts)
    return values
