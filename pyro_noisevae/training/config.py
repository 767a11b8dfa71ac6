"""The configuration of a training run, its validation, and the registries of every choice it offers."""

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import torch

from ..data import DATASETS, SPLITS
from ..distributions.corruption import CORRUPTIONS, make_corruption
from ..infer.iwae_elbo import GRADIENT_ESTIMATORS
from ..models import LIKELIHOODS
from ..models.fused import OBJECTIVES

__all__ = [
    "ACTIVATIONS",
    "BINARIZE",
    "CORRUPTIONS",
    "DATASETS",
    "ENCODERS",
    "GRADIENT_ESTIMATORS",
    "LIKELIHOODS",
    "OBJECTIVES",
    "RUN_CONTROL",
    "SPLITS",
    "TrainConfig",
    "config_differences",
    "nonnegative_float",
    "positive_float",
    "positive_int",
    "unit_interval",
]

# The registries: the CLI reads its choice lists from here. Likelihoods, datasets, splits, objectives, gradient
# estimators and corruptions are re-exported from the modules that implement them.
#: ``encoder`` choices (built by :func:`~pyro_noisevae.training.build_model`)
ENCODERS = ("mlp", "wni", "gru")
#: ``activation`` choices (those of :class:`~pyro_noisevae.nn.MLP`)
ACTIVATIONS = ("softplus", "relu", "tanh", "elu")
#: ``binarize`` choices besides ``None``: ``dynamic`` redraws Bernoulli pixels every mini-batch
BINARIZE = ("threshold", "dynamic")

#: settings that control how a run is executed, not what it computes: the only ones ``--resume`` may change
RUN_CONTROL = ("epochs", "patience", "lr_drops", "device", "data_root", "log_every", "distributed", "fast_path", "out")


# ---------------------------------------------------------------------------------------------------------
# value checks, shared by TrainConfig and the command line's argument types
# ---------------------------------------------------------------------------------------------------------


def positive_int(value):
    """``value`` as an ``int`` if it is an integer >= 1, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"must be an integer >= 1, got {value!r}")
    return int(value)


def positive_float(value):
    """``value`` as a ``float`` if it is a finite number > 0, else ``ValueError``."""
    value = _real(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a finite number > 0, got {value!r}")
    return value


def nonnegative_float(value):
    """``value`` as a ``float`` if it is a finite number >= 0, else ``ValueError``."""
    value = _real(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be a finite number >= 0, got {value!r}")
    return value


def unit_interval(value):
    """``value`` as a ``float`` if it lies in [0, 1], else ``ValueError``."""
    value = _real(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a number in [0, 1], got {value!r}")
    return value


def _real(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"must be an integer, got {value!r}")
    return int(value)


def _integer_at_least_zero(value):
    value = _integer(value)
    if value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return value


def _optional(check):
    return lambda value: None if value is None else check(value)


def _choice(choices):
    def check(value):
        if value not in choices:
            raise ValueError(f"must be one of {choices}, got {value!r}")
        return value

    return check


def _device(value):
    try:
        torch.device(value)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {value!r}") from e
    return value


_CHECKS = {
    "dataset": _choice(DATASETS),
    "train_split": _choice(SPLITS),
    "eval_split": _choice(SPLITS),
    "binarize": _choice((None,) + BINARIZE),
    "train_size": _optional(positive_int),
    "eval_size": _optional(positive_int),
    "likelihood": _choice(LIKELIHOODS),
    "sigma": _optional(positive_float),
    "beta": positive_float,
    "kl_warmup_epochs": nonnegative_float,
    "z_dim": positive_int,
    "activation": _choice(ACTIVATIONS),
    "encoder": _choice(ENCODERS),
    "wni_bound": _optional(positive_float),
    "objective": _choice(OBJECTIVES),
    "num_particles": positive_int,
    "gradient_estimator": _choice(GRADIENT_ESTIMATORS),
    "corruption": _choice(CORRUPTIONS),
    "corruption_level": nonnegative_float,
    "num_corruptions": positive_int,
    "partial_alpha": unit_interval,
    "epochs": positive_int,
    "batch_size": positive_int,
    "lr": positive_float,
    "seed": _integer,
    "max_steps": _optional(positive_int),
    "patience": _optional(positive_int),
    "lr_drops": _integer_at_least_zero,
    "log_every": positive_int,
    "noisy_eval_std": nonnegative_float,
    "device": _device,
}


@dataclass
class TrainConfig:
    """
    Everything that defines a training run (saved as ``config.json`` and inside ``checkpoint.pt``).

    Data: ``dataset`` (one of :data:`DATASETS`), ``data_root``, ``train_split``, ``eval_split`` (:data:`SPLITS`),
    ``binarize`` (``None`` | ``threshold`` | ``dynamic``: dynamic redraws Bernoulli pixels every mini-batch),
    ``train_size``/``eval_size`` (random subsets of that many images, for quick runs).
    Model: ``likelihood`` (:data:`LIKELIHOODS`); ``sigma``, the decoder's scale as
    :class:`~pyro_noisevae.models.VAE` takes it: the fixed σ of ``normal``/``noisy-bernoulli``, the initial σ of
    ``learned-normal``, the scale b of ``laplace`` (set from the command line as ``--laplace-scale``), ``None``
    for ``bernoulli``; ``beta`` and ``kl_warmup_epochs`` (β rises linearly from 0 over that many epochs),
    ``z_dim``, ``hidden_dims``, ``activation``, ``encoder`` (:data:`ENCODERS`; ``wni`` needs ``wni_bound``).
    Objective: ``objective`` (:data:`OBJECTIVES`), ``num_particles``, ``gradient_estimator`` (``dreg``: iwae
    only), and the denoising guide's ``corruption``, ``corruption_level``, ``num_corruptions``,
    ``partial_alpha``.
    Optimisation: ``epochs``, ``batch_size``, ``lr``, ``seed``, ``max_steps`` (cap on the steps of each epoch).
    Early stopping: ``patience`` (``None``: off): after every epoch the run measures the bound it trains on (the
    ELBO, or the IWAE-K bound for ``objective="iwae"``) on ``eval_split``, which must then be
    ``"valid"``; it keeps the weights of the best epoch in ``best.pt`` and stops once ``patience`` epochs in a row
    have not improved on it (``epochs`` is then the cap). With ``lr_drops = n > 0``, the first ``n`` such plateaus
    divide the learning rate by 10 instead of stopping, and the count of stale epochs restarts at the drop.
    Execution (:data:`RUN_CONTROL`, the settings a resumed run may change): ``epochs``, ``patience``,
    ``lr_drops``, ``device``,
    ``data_root``, ``log_every``, ``distributed`` (DDP over ``torchrun`` processes), ``fast_path`` (train with
    the fused tensor objective :class:`~pyro_noisevae.models.FusedVAEObjective`, the same estimator and random
    draws as the Pyro programs; ``False`` runs the Pyro ELBO on the programs of
    :func:`~pyro_noisevae.training.build_programs`), ``out`` (the run folder).

    :raises ValueError: on a value out of range or a choice not in its registry, naming the field.
    """

    dataset: str = "mnist"
    data_root: str | None = None
    train_split: str = "trainval"
    eval_split: str = "test"
    binarize: str | None = None
    train_size: int | None = None
    eval_size: int | None = None
    likelihood: str = "normal"
    sigma: float | None = 0.2
    beta: float = 1.0
    kl_warmup_epochs: float = 0.0
    z_dim: int = 50
    hidden_dims: tuple = (500, 500)
    activation: str = "softplus"
    encoder: str = "mlp"
    wni_bound: float | None = None
    objective: str = "trace"
    num_particles: int = 1
    gradient_estimator: str = "standard"
    corruption: str = "none"
    corruption_level: float = 0.0
    num_corruptions: int = 1
    partial_alpha: float = 1.0
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    patience: int | None = None
    lr_drops: int = 0
    log_every: int = 50
    noisy_eval_std: float = 0.5
    out: str = "runs/sigma_vae"
    distributed: bool = False
    fast_path: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.hidden_dims = tuple(self.hidden_dims)
        for name, check in _CHECKS.items():
            try:
                setattr(self, name, check(getattr(self, name)))
            except ValueError as e:
                raise ValueError(f"{name} {e}") from None
        for h in self.hidden_dims:
            try:
                positive_int(h)
            except ValueError as e:
                raise ValueError(f"hidden_dims entries {e}") from None
        if self.likelihood == "bernoulli":
            self.sigma = None
        elif self.sigma is None and self.likelihood != "learned-normal":
            raise ValueError(f"likelihood {self.likelihood!r} needs sigma (its scale)")
        if self.encoder == "wni" and self.wni_bound is None:
            raise ValueError("encoder 'wni' needs wni_bound (--wni-bound: the bound H > 0 on every weight vector's norm)")
        if self.gradient_estimator != "standard" and self.objective != "iwae":
            raise ValueError(f"gradient_estimator {self.gradient_estimator!r} is implemented for objective 'iwae' only (--objective iwae)")
        if self.patience is not None and self.eval_split != "valid":
            raise ValueError(f"early stopping (patience) selects the epoch on eval_split, which is {self.eval_split!r}; "
                             "set eval_split='valid' (--eval-split valid) so the test split is never used to select")
        if self.lr_drops and self.patience is None:
            raise ValueError("lr_drops divides the learning rate on a validation plateau, which needs patience "
                             "(--patience N --eval-split valid)")
        if self.patience is not None and self.distributed:
            raise ValueError("early stopping (patience) is not implemented for distributed runs; drop --patience or "
                             "--distributed")
        if self.corruption == "none":
            if self.num_corruptions != 1 or self.partial_alpha != 1.0:
                raise ValueError("num_corruptions and partial_alpha need a corruption (--corruption gaussian or salt-and-pepper)")
        else:
            make_corruption(self.corruption, self.corruption_level)  # raises on a level outside its range

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["hidden_dims"] = list(self.hidden_dims)
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d)


def config_differences(saved, wanted, ignore=RUN_CONTROL):
    """
    The settings in which two configurations differ, except those in ``ignore``.

    :param TrainConfig saved: e.g. a run's saved configuration.
    :param TrainConfig wanted: e.g. the configuration a resume asks for.
    :returns: list of ``(name, saved value, wanted value)``, in field order.
    """
    a, b = saved.to_dict(), wanted.to_dict()
    return [(k, a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]]
