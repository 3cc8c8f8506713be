"""Every setting of a training run in one frozen object, ``TrainConfig``, each default written once.

``nslib.training.train``'s keywords, the command line's ``train`` flags (``nslib.cli``) and the
``recipe`` dict a checkpoint carries are these settings; the recipe's own options are checked
against its signature (``nslib.recipes.recipe_options``), so a misspelt one is an error.
Re-exported by ``nslib.training``. Taught in lesson 04 (``04_robust_training_and_sns.ipynb``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from .checkpoints import upgrade_recipe
from .precision import check_compile, check_precision
from .recipes import check_options, recipe_options

__all__ = ["TrainConfig", "SETTINGS", "OPTIMIZERS", "SCHEDULES", "PROVENANCE"]

#: ``TrainConfig.optimizer`` choices.
OPTIMIZERS = ("adam", "sgd")
#: ``TrainConfig.schedule`` choices besides ``None`` and a callable.
SCHEDULES = ("cosine", "multistep")
#: Keys a checkpoint's recipe dict carries about where it came from, not how to train
#: (the number of processes, the shell command): ``TrainConfig.from_dict`` ignores them.
PROVENANCE = ("world_size", "command")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, each default written here once.

    ``train()``'s keywords, the command line's flags and a checkpoint's ``recipe`` dict
    are these settings. The recipe's own options live in ``options``: validated
    against the recipe function's keyword-only parameters (``nslib.recipes.recipe_options``),
    their defaults read from its signature. Frozen: change a copy with :meth:`replace`.

    Attributes:
        recipe (str): ``"standard"``, ``"pgd_at"``, ``"trades"`` or ``"sns"``. Default: ``"standard"``.
        epochs (int): total epochs (a resumed run continues up to it). Default: ``10``.
        lr (float): learning rate. Default: ``1e-3``.
        optimizer (str): ``"adam"`` or ``"sgd"`` (momentum 0.9). Default: ``"adam"``.
        weight_decay (float): Default: ``0.0``.
        batch_size (int): global batch size (split across processes under ``torchrun``). Default: ``100``.
        schedule (str or callable): ``None``, ``"cosine"``, ``"multistep"`` (x0.1 at 50 % and
            75 %) or ``callable(optimizer) -> scheduler``; stepped per epoch. Default: ``None``.
        eps (float): Linf budget of ``x'`` and of the robust evaluation. Default: ``None``: the
            data set's usual one (``nslib.data.DatasetInfo.eps``: MNIST 0.3, Fashion-MNIST 0.1,
            CIFAR-10 8/255); for data without that, ``nslib.utils.default_eps`` of its channels.
        alpha (float): PGD step size at full eps. Default: ``None``: ``nslib.utils.pgd_step(eps,
            steps)`` (``2.5 * eps / steps``, Madry et al.).
        steps (int): PGD steps when training. Default: ``10``.
        eps_warmup_epochs (float): epochs of the linear eps ramp (``nslib.training.ramp``). Default: ``0``.
        seed (int): seeds everything (``nslib.utils.seed_everything``) and the shuffling of
            epoch ``e`` (``seed * 1000 + e``); evaluation uses ``seed + 12345``. Default: ``0``.
        precision (str): ``"fp32"``, ``"bf16"`` (autocast and channels_last, attacks included)
            or ``"fp16"`` (autocast with a gradient scaler); ``nslib.precision``. CUDA only: on
            the CPU it falls back to fp32 with a warning. Default: ``"fp32"``. (Checkpoints
            from before it carry ``amp``: ``True`` reads as ``"fp16"``.)
        compile (bool or str): ``torch.compile`` the model for the run, in place
            (``nslib.precision.compiled``): the attack's passes, the loss's and the evaluation's.
            ``False``: eager; ``True`` or ``"default"``; ``"reduce-overhead"`` adds CUDA graphs (one
            launch per captured pass: the fast path at small batches; CUDA only, elsewhere
            ``"default"`` with a warning); any of ``nslib.precision.COMPILE_MODES``. The first
            batches compile. Stored as ``False`` or the mode's name. Default: ``False``.
        max_batches (int): stop each epoch after this many batches (quick runs). Default: ``None``.
        eval_every (int): evaluate every this many epochs (and the last). Default: ``1``.
        eval_n (int): test examples of the per-epoch evaluation. Default: ``500``.
        eval_steps (int): PGD steps of the per-epoch robust accuracy. Default: ``20``.
        eval_layers (list of str): the layers whose sensitivity the per-epoch check logs.
            Default: ``None``: SNS's ``layers`` when given, else ``nslib.recipes.sns_layers(model)``.
        options (dict): the recipe's options as given, e.g. ``{"beta": 3.0}`` (trades) or
            ``{"lam": 0.1, "k": 3}`` (sns); a tuple is stored as a list. Default: ``{}``.

    An unknown setting or option raises at once, e.g. ``TrainConfig.from_dict({"recipe":
    "sns", "lamda": 0.1})``: ``ValueError: unknown option 'lamda' for recipe 'sns'; options:
    lam, layers, k, max_k, topk_every, momentum, ce_on, fuse. Did you mean 'lam'? ...``.

    Example:
        >>> config = TrainConfig.from_dict({"recipe": "sns", "epochs": 5, "lam": 0.1})
        >>> config.options, config.options_with_defaults()["k"]
        ({'lam': 0.1}, 0.1)
    """

    recipe: str = "standard"
    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    batch_size: int = 100
    schedule: str | Callable | None = None
    eps: float | None = None
    alpha: float | None = None
    steps: int = 10
    eps_warmup_epochs: float = 0
    seed: int = 0
    precision: str = "fp32"
    compile: bool | str = False
    max_batches: int | None = None
    eval_every: int = 1
    eval_n: int = 500
    eval_steps: int = 20
    eval_layers: list[str] | None = None
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_options(self.recipe, self.options, settings=SETTINGS)  # an unknown recipe raises here too
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive int, got {self.epochs!r}.")
        check_precision(self.precision)
        object.__setattr__(self, "compile", check_compile(self.compile) or False)   # True: "default"
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose 'adam' or 'sgd'.")
        if not (self.schedule is None or callable(self.schedule) or self.schedule in ("none", *SCHEDULES)):
            raise ValueError(f"unknown schedule {self.schedule!r}; choose None, 'cosine', 'multistep' or a "
                             "callable(optimizer) -> torch.optim.lr_scheduler object.")
        object.__setattr__(self, "options", {name: list(value) if isinstance(value, tuple) else value
                                             for name, value in dict(self.options).items()})

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> TrainConfig:
        """The config of a flat dict of settings and recipe options, e.g. a checkpoint's ``recipe``.

        Strict: a key that is neither a setting (``SETTINGS``) nor an option of the
        recipe raises ``ValueError`` naming the valid ones. The provenance keys
        checkpoints carry (``PROVENANCE``: ``world_size``, ``command``) are accepted and
        ignored on purpose, so a checkpoint's recipe can be replayed::

            config = TrainConfig.from_dict(read_checkpoint(path)["recipe"])

        Args:
            settings (mapping): ``{"recipe": "sns", "epochs": 40, "lam": 0.01, ...}``;
                missing settings take their defaults.

        Returns:
            TrainConfig: the validated config.
        """
        if not isinstance(settings, Mapping):
            raise TypeError(f"settings must be a dict such as {{'recipe': 'sns', 'lam': 0.01}}, "
                            f"got {type(settings).__name__}.")
        settings = upgrade_recipe(settings)
        given = {name: value for name, value in settings.items() if name in SETTINGS}
        options = {name: value for name, value in settings.items()
                   if name not in SETTINGS and name not in PROVENANCE}
        return cls(**given, options=options)

    def replace(self, **settings: Any) -> TrainConfig:
        """A copy with ``settings`` changed: fields and recipe options alike, validated as :meth:`from_dict`."""
        return TrainConfig.from_dict({**{name: getattr(self, name) for name in SETTINGS}, **self.options,
                                      **settings})

    def options_with_defaults(self) -> dict[str, Any]:
        """Every option of the recipe, in its signature's order: the given value or the signature's default."""
        return {**recipe_options(self.recipe), **self.options}

    def to_dict(self, world_size: int = 1) -> dict[str, Any]:
        """The flat dict a checkpoint records (``recipe`` of ``model.pt``, ``config`` of ``last.pt``).

        Keys, in this order: recipe, epochs, lr, optimizer, weight_decay, batch_size,
        schedule (a callable as its ``repr``), eps, alpha, steps, eps_warmup_epochs, seed,
        precision, compile, world_size, max_batches, then the given recipe options. The evaluation
        settings are not part of it (they do not change the weights).

        Args:
            world_size (int, optional): processes that trained (provenance). Default: ``1``.
        """
        schedule = self.schedule if isinstance(self.schedule, (str, type(None))) else repr(self.schedule)
        return {"recipe": self.recipe, "epochs": self.epochs, "lr": self.lr, "optimizer": self.optimizer,
                "weight_decay": self.weight_decay, "batch_size": self.batch_size, "schedule": schedule,
                "eps": self.eps, "alpha": self.alpha, "steps": self.steps,
                "eps_warmup_epochs": self.eps_warmup_epochs, "seed": self.seed,
                "precision": self.precision, "compile": self.compile,
                "world_size": world_size, "max_batches": self.max_batches, **self.options}


#: The names of ``TrainConfig``'s settings (every field but ``options``), in order.
SETTINGS = tuple(f.name for f in fields(TrainConfig) if f.name != "options")
