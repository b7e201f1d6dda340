"""One place per decision: the model-family registry.

- a toy family, added in this one file (a pixel UNet whose images are its samples upsampled twice), is detected,
  loads, decodes, is estimated and trains through the CLI with nothing else changed;
- no family name appears where a family is meant outside ``hrf_core/models/families/``.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from hrf_core import REPO_ROOT
from hrf_core.cli import main
from hrf_core.config import TrainConfig
from hrf_core.models import families, registry
from hrf_core.models.base import BaseModel
from hrf_core.models.families.pixel import Pixel
from hrf_core.rl.memory import estimate
from hrf_core.store.runs import RunStore

MARKER = "upsample.json"


@dataclasses.dataclass
class Upsampled(BaseModel):
    """A pixel UNet whose images are its samples upsampled twice (nearest)."""

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.sample_shape
        return (c, 2 * h, 2 * w)


class UpsampledFamily(Pixel):
    """A test's family: a pixel UNet folder holding ``upsample.json``."""

    name = "upsampled"
    label = "upsampled pixel UNet"
    fallback = False

    def detect(self, folder):
        return (Path(folder) / MARKER).is_file()

    def load(self, name, folder, device):
        model = super().load(name, folder, device)
        return Upsampled(**{f.name: getattr(model, f.name) for f in dataclasses.fields(model)} | {"family": self.name})

    def image_shape(self, folder):
        c, h, w = self.sample_shape(folder)
        return (c, 2 * h, 2 * w)


@pytest.fixture
def upsampled():
    family = families.register(UpsampledFamily())
    yield family
    families.unregister(family.name)


@pytest.fixture(scope="module")
def upsampled_dir(tmp_path_factory):
    """A tiny 8x8 pixel UNet with one attention block, marked as the toy family's."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)
    folder = tmp_path_factory.mktemp("upsampled")
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True, set_alpha_to_one=False,
                  steps_offset=1).save_pretrained(folder / "scheduler")
    (folder / MARKER).write_text("{}")
    return folder


def test_a_registered_family_loads_decodes_is_estimated_and_trains_through_the_cli(upsampled, upsampled_dir, tmp_path,
                                                                                     monkeypatch):
    name = str(upsampled_dir)
    assert registry.family_of(name) is upsampled and families.detect(upsampled_dir) is upsampled
    assert registry.sample_shape_of(upsampled_dir) == (1, 8, 8)
    assert registry.image_shape_of(upsampled_dir) == (1, 16, 16)
    model = registry.load_base_model(name, "cpu")
    assert isinstance(model, Upsampled) and model.family == upsampled.name and model.image_shape == (1, 16, 16)
    assert model.decode(torch.zeros(2, 1, 8, 8)).shape == (2, 1, 16, 16)
    # the memory estimate reads its networks; finetune auto follows its LoRA default (diffusers' UNet2DModel takes
    # no peft adapter, so this family trains every weight)
    found = estimate(TrainConfig(model=name), torch.device("cpu"))
    assert "gradients and AdamW" in found.parts and 0 < found.total_gb < 0.1
    assert not upsampled.trains_lora(TrainConfig(model=name))
    monkeypatch.setattr(UpsampledFamily, "lora_default", True)
    assert upsampled.trains_lora(TrainConfig(model=name)) and not upsampled.trains_lora(TrainConfig(finetune="full"))
    monkeypatch.undo()

    # the command line trains it and evaluates 16x16 images
    args = ["train", "--model", name, "--reward", "jpeg-compressibility", "--method", "ddpo", "--steps", "6",
            "--epochs", "1", "--samples", "4", "--batch-size", "4", "--eval-samples", "4", "--device", "cpu",
            "--out", str(tmp_path), "--name", "up"]
    assert main(args) == 0
    run = RunStore(tmp_path).get("up")
    checkpoint = run.checkpoints()[-1]
    shutil.copyfile(upsampled_dir / MARKER, checkpoint / MARKER)  # a checkpoint is a plain diffusers folder
    tuned = registry.load_base_model(str(checkpoint), "cpu")
    assert isinstance(tuned, Upsampled) and tuned.family == upsampled.name
    assert any("reward_mean" in row for row in run.metrics())
    assert run.config["eval_embeddings"] == ["pixel", "classifier", "rbf", "hog"]  # measured as 16x16 digits

    families.unregister(upsampled.name)  # without its registry line the folder is a plain pixel UNet again
    assert registry.family_of(name) is families.default() and type(registry.load_base_model(name, "cpu")) is BaseModel
    families.register(upsampled)


def test_a_family_name_is_taken_once_and_an_unknown_one_is_one_line(upsampled):
    with pytest.raises(ValueError, match="registered already"):
        families.register(UpsampledFamily())
    with pytest.raises(ValueError, match="unknown model family 'sdxl': choose one of"):
        families.get("sdxl")
    assert families.get("") is families.default()  # a model built by hand


# -- the family strings live in the family registry only -------------------------------------------------------
def family_literals(path: Path, names: set[str], root: Path = REPO_ROOT) -> list[str]:
    """``path:line: literal`` of every string literal in ``path`` that is a family's name where a family is meant: in
    a statement (or a compound statement's header) that mentions a family, as the default of a ``family``
    parameter, or anywhere in a function whose name says family. "pixel" is also the pixel-space embedding's name
    and "text-to-image" the Hub's pipeline tag: those uses mention no family and are not counted."""
    source = path.read_text()
    tree = ast.parse(source)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node

    def family_meant(node: ast.AST) -> bool:
        child = node
        while id(child) in parents:
            parent = parents[id(child)]
            if isinstance(parent, ast.arguments):
                params = [*parent.posonlyargs, *parent.args]
                pairs = [*zip(params[len(params) - len(parent.defaults):], parent.defaults, strict=True),
                         *zip(parent.kwonlyargs, parent.kw_defaults, strict=True)]
                return any(default is child and "famil" in arg.arg for arg, default in pairs)
            if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) and "famil" in parent.name:
                return True
            if isinstance(parent, ast.stmt) and not isinstance(child, ast.stmt):
                part = child if hasattr(parent, "body") else parent  # a compound statement: its header only
                return "famil" in (ast.get_source_segment(source, part) or "").lower() or any(
                    isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) and "famil" in p.name
                    for p in _ancestors(parent, parents))
            child = parent
        return False

    return [f"{path.relative_to(root)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in names and family_meant(node)]


def _ancestors(node: ast.AST, parents: dict[int, ast.AST]):
    while id(node) in parents:
        node = parents[id(node)]
        yield node


def test_no_family_name_outside_the_family_registry():
    names = set(families.FAMILIES)
    files = [*REPO_ROOT.glob("hrf_core/**/*.py"), *REPO_ROOT.glob("explorer/**/*.py"), REPO_ROOT / "app.py",
             *REPO_ROOT.glob("bench/*.py")]
    allowed = set(REPO_ROOT.glob("hrf_core/models/families/*.py"))
    found = [hit for path in files if path not in allowed for hit in family_literals(path, names)]
    assert not found, "\n".join(found)


def test_the_family_literal_check_can_fail(tmp_path):
    """It finds a family compared, passed, defaulted or returned by name (what the registry replaced), and not the
    homonyms: the pixel embedding and the Hub's pipeline tag."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        'def f(spec, name, adapter, family: str = "pixel"):\n'
        '    if spec.family == "text-to-image":\n'
        '        return Spec(family="text-to-image")\n'
        '    embeddings = ("pixel", "rbf") if name != "pixel" else ()\n'
        '    return "text-to-image" if adapter else "unconditional-image-generation"\n'
        'def family_of(folder):\n'
        '    return "text-to-image" if folder else "pixel"\n')
    hits = [hit.split(":", 1)[1] for hit in family_literals(probe, {"pixel", "text-to-image"}, root=tmp_path)]
    assert sorted(hits) == sorted(["1: 'pixel'", "2: 'text-to-image'", "3: 'text-to-image'", "7: 'text-to-image'",
                                   "7: 'pixel'"])
