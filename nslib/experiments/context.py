"""What every experiment shares: the ``Context`` of a run, the ``Result`` it returns, the
four models, and the white-box PGD inputs the sensitivity experiments measure on.

The Context records every file an experiment reads (checkpoints, data files), so
``nslib.reproduce`` can tell whether a step's inputs changed since it last ran.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .. import data
from ..checkpoints import CHECKPOINT_DIR, load_checkpoint, load_pretrained, pretrained_names, pretrained_path, \
    read_checkpoint
from ..precision import check_compile, check_precision
from ..settings import DEFAULT, REGISTRY, Setting
from ..utils import default_device, mean_std, pgd_step, seed_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Context", "Result", "MODELS", "SHIPPED_SEEDS", "seed_name", "short_name", "pgd_inputs",
           "mean_std"]

#: The four shipped models (the default setting's, ``nslib.settings``), in the order every table
#: and figure shows them. A run's models are ``Context.models`` (its setting's).
MODELS = DEFAULT.model_names
#: The training seeds shipped for each of them: seed 0 is the course's model (``mnist_sns``),
#: seeds 1 and 2 (``mnist_sns_seed1`` ...) measure how much a result moves between training runs.
SHIPPED_SEEDS = (0, 1, 2)


def short_name(name: str) -> str:
    """The name tables and figures use, the recipe's: ``"mnist_pgd_at"`` -> ``"pgd_at"`` (any setting's prefix)."""
    for setting in REGISTRY.values():
        if name.startswith(setting.prefix + "_"):
            return name[len(setting.prefix) + 1:]
    return name


@dataclass
class Context:
    """What every step needs: the setting (``nslib.settings``), where to write, how big, which
    device, how many training seeds, which AutoAttack; and which files it read.

    ``quick`` is the small budget (N = 200, the trimmed attack suite); the shipped checkpoints
    and the recorded E7 sweep are used when the setting ships them (:attr:`shipped`, the
    default MNIST setting); any other setting trains its models from its recipes, in quick
    mode for ``setting.quick_epochs`` epochs (a smoke run).

    ``seeds`` training seeds per recipe (0 .. seeds-1): retrained ones in full mode; in quick
    mode the shipped ones among them (at most ``len(SHIPPED_SEEDS)``; a model with fewer
    shipped seeds uses those it has, :meth:`seeds_of`). ``autoattack`` is the
    AutoAttack version (``nslib.autoattack``): ``"quick"`` (our CPU subset) by default in
    quick mode, ``"standard"`` in full mode. ``precision`` and ``compile`` are how the models and
    the E7 sweep train (``nslib.precision``); every measurement is fp32 and eager.
    """

    out: Path
    quick: bool = True
    seed: int = 0
    device: torch.device = field(default_factory=default_device)
    progress: bool = True
    n_images: int | None = None
    seeds: int = len(SHIPPED_SEEDS)
    autoattack: str | None = None
    setting: Setting = DEFAULT
    precision: str = "fp32"
    compile: bool | str = False
    used_checkpoints: dict[str, str] = field(default_factory=dict)  # label -> file
    used_data: dict[str, str] = field(default_factory=dict)  # label -> file

    def __post_init__(self):
        from ..autoattack import check_version

        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds (training seeds per recipe) must be an int >= 1, got {self.seeds!r}.")
        if self.shipped and self.seeds > len(SHIPPED_SEEDS):
            raise ValueError(f"quick mode uses the shipped seeds, and {len(SHIPPED_SEEDS)} are shipped; got seeds="
                             f"{self.seeds}. Use --seeds {len(SHIPPED_SEEDS)} or fewer, or --full to train more.")
        check_precision(self.precision)
        check_compile(self.compile)
        if self.autoattack is None:
            self.autoattack = "quick" if self.quick else "standard"
        check_version(self.autoattack)

    @property
    def shipped(self) -> bool:
        """Whether this run uses the shipped checkpoints and the recorded sweep (quick mode, default setting)."""
        return self.quick and self.setting.shipped

    @property
    def models(self) -> tuple[str, ...]:
        """The four models' names in this run's setting (``mnist_standard`` ...)."""
        return self.setting.model_names

    def model_name(self, recipe: str) -> str:
        """The model of ``recipe`` in this run's setting: ``ctx.model_name("standard")``."""
        return self.setting.model_name(recipe)

    @property
    def seed_list(self) -> list[int]:
        """The training seeds of this run: ``0 .. seeds - 1``."""
        return list(range(self.seeds))

    def seeds_of(self, name: str) -> list[int]:
        """The training seeds of model ``name`` this run uses: all of :attr:`seed_list` in full
        mode; in quick mode those shipped (listed in the manifest), seed 0 always."""
        if not self.shipped:
            return self.seed_list
        shipped = set(pretrained_names())
        return [s for s in self.seed_list if s == 0 or seed_name(name, s) in shipped]

    def common_seeds(self) -> list[int]:
        """The training seeds every one of the four models has (:meth:`seeds_of`): what E1 and
        E6 compare, since they set the models against each other seed by seed."""
        return [s for s in self.seed_list if all(s in self.seeds_of(name) for name in self.models)]

    @property
    def n(self) -> int:
        """Test images used by the attack-based steps: 200 quick, 1000 full, unless set."""
        return self.n_images or (200 if self.quick else 1000)

    def checkpoint_path(self, name: str, seed: int = 0) -> Path:
        """The shipped checkpoint (quick) or the one retrained by the ``models`` step (full), of a training seed."""
        name = seed_name(name, seed)
        if self.shipped:
            if name not in pretrained_names():
                raise FileNotFoundError(
                    f"checkpoint {name!r} is not in {CHECKPOINT_DIR}/manifest.json; {data.reinstall_hint()}, "
                    "or train it with scripts/train_shipped.py.")
            return pretrained_path(name)
        path = self.out / "models" / f"{name}.pt"
        if not path.exists():
            mode = "--quick" if self.quick else "--full"
            raise FileNotFoundError(f"{path} does not exist: this run uses models trained by its models step; run "
                                    f"`python -m nslib reproduce {mode} --setting {self.setting.name} --steps models "
                                    f"--out {self.out}` first.")
        return path

    def model(self, name: str, seed: int = 0) -> nn.Module:
        """A model by name (and training seed), in eval mode on the device; its checkpoint is
        recorded for the step's key."""
        path = self.checkpoint_path(name, seed)
        if self.shipped:
            model, _ = load_pretrained(seed_name(name, seed), map_location=self.device)  # sha256-checked
        else:
            model, _ = load_checkpoint(path, map_location=self.device)
        self.used_checkpoints[seed_name(name, seed)] = str(path)
        return model.to(self.device).eval()

    def checkpoint_info(self, name: str, seed: int = 0) -> dict:
        """The checkpoint's recipe, metrics and training log (no weights); recorded for the step's key."""
        path = self.checkpoint_path(name, seed)
        self.used_checkpoints[seed_name(name, seed)] = str(path)
        info = read_checkpoint(path)
        info.pop("state_dict", None)
        return info

    def uses(self, label: str, path: Path) -> Path:
        """Record that the step reads the data file ``path`` (its sha256 joins the step's key)."""
        self.used_data[label] = str(path)
        return path

    def test_images(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` (default :attr:`n`) test images and labels of the setting's data set,
        on the device; the data file is recorded for the step's key."""
        name = self.setting.dataset
        self.uses(name, data.held_out_file(name))
        x, y = data.load(name, "test").tensors(n or self.n)
        return x.to(self.device), y.to(self.device)

    def test_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first :attr:`n` test images and labels (:meth:`test_images`)."""
        return self.test_images()


@dataclass
class Result:
    """What an experiment returns: its finding and its output files' contents, in report order.

    ``outputs`` maps a file name to a table (a list of dicts with the same keys, written as
    CSV) or a matplotlib Figure (written as PNG); ``nslib.reproduce`` writes them.
    """

    finding: str
    outputs: dict[str, list[dict] | Figure]

    @property
    def tables(self) -> dict[str, list[dict]]:
        """The tables by file name."""
        return {name: rows for name, rows in self.outputs.items() if isinstance(rows, list)}

    @property
    def figures(self) -> dict[str, Figure]:
        """The figures by file name."""
        return {name: fig for name, fig in self.outputs.items() if not isinstance(fig, list)}


def pgd_inputs(ctx: Context, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """White-box L-inf PGD against ``model`` at the setting's eps (0.3 on MNIST, 8/255 on
    CIFAR-10), step ``2.5 * eps / steps`` (PGD-20 quick, PGD-40 full), random start drawn after seeding."""
    from ..attacks import pgd

    eps = ctx.setting.eps
    steps = 20 if ctx.quick else 40
    torch.manual_seed(ctx.seed)
    return pgd(model, x, y, eps=eps, alpha=pgd_step(eps, steps), steps=steps)
