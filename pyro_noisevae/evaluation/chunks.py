"""
Data handling of the evaluation tools: argument checks, and the chunks a data set is evaluated in: slices of the
data arguments (amortized guides) or subsample indices of the data plate (guides with per-point parameters).
"""

import math
import numbers

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide
from pyro.util import get_rng_state, set_rng_state

from ..guides import DenoisingGuide
from ..infer.importance import SetSubsample, check_local, infer_max_plate_nesting, probe_traces, site_structure

__all__ = [
    "Chunk",
    "check_data",
    "check_float",
    "check_nesting",
    "check_positive_int",
    "check_programs",
    "data_chunks",
    "data_plate_nesting",
    "data_plate_frame",
    "denoising_pair",
    "is_autoguide",
    "make_chunks",
    "probe_structure",
    "subsample_chunks",
]


def check_positive_int(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= 1{extra}, got {value!r}")
    return int(value)


def check_nesting(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"max_plate_nesting must be None (inferred) or an integer >= 1 (the data plate counts as one), got {value!r}"
        )
    return int(value)


def check_programs(model, guide):
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro program, got {type(model).__name__}")
    if not callable(guide):
        raise TypeError(f"guide must be a callable Pyro program, got {type(guide).__name__}")


def _data_keys(data_arg):
    keys = data_arg if isinstance(data_arg, (tuple, list)) else (data_arg,)
    if not keys:
        raise ValueError("data_arg must name at least one argument")
    for key in keys:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"data_arg must be a position (int), a keyword (str) or a tuple of them, got {key!r}")
    return tuple(keys)


def _get(args, kwargs, key):
    if isinstance(key, str):
        if key not in kwargs:
            raise TypeError(f"data_arg={key!r}: the keyword argument {key!r} was not passed")
        return kwargs[key]
    if not -len(args) <= key < len(args):
        raise TypeError(
            f"data_arg={key}: only {len(args)} positional argument(s) were passed; pass the data positionally "
            "(e.g. log_likelihood(model, guide, x)) or name its keyword with data_arg='x'"
        )
    return args[key]


def check_data(args, kwargs, data_arg):
    """Validate the data tensors named by ``data_arg``; returns ``(keys, num_data)``."""
    keys = _data_keys(data_arg)
    num = None
    for key in keys:
        x = _get(args, kwargs, key)
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"the data argument {key!r} must be a torch.Tensor whose first dim indexes data points, "
                f"got {type(x).__name__}"
            )
        if x.dim() < 1 or x.shape[0] < 1:
            raise ValueError(f"the data argument {key!r} must have at least one data point along dim 0, got shape {tuple(x.shape)}")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"the data argument {key!r} contains NaN or infinite values; clean or impute them first")
        if num is not None and x.shape[0] != num:
            raise ValueError(f"the data arguments {keys} have different numbers of rows ({num} vs {x.shape[0]})")
        num = x.shape[0]
    return keys, num


def _slice_args(args, kwargs, keys, index):
    """Copies of ``args``/``kwargs`` with the data tensors named by ``keys`` restricted to rows ``index``."""
    args, kwargs = list(args), dict(kwargs)
    for key in keys:
        if isinstance(key, str):
            kwargs[key] = kwargs[key][index]
        else:
            args[key] = args[key][index]
    return tuple(args), kwargs


def data_chunks(args, kwargs, data_arg, batch_size):
    """Yield ``(slice, args, kwargs)`` for consecutive chunks of at most ``batch_size`` data points."""
    keys, num = check_data(args, kwargs, data_arg)
    size = num if batch_size is None else batch_size
    for start in range(0, num, size):
        rows = slice(start, min(start + size, num))
        yield (rows,) + _slice_args(args, kwargs, keys, rows)


# ----------------------------------------------------------------------------------------------------------
# data chunks: slices of the data arguments (amortized guides), or subsample indices of the data plate


class Chunk:
    """One pass's data: ``args``/``kwargs`` for the programs, ``wrap`` to apply to them, and the output rows."""

    def __init__(self, rows, args, kwargs, num_rows, wrap=None, valid=None):
        self.rows = rows  # slice of the output (N,) this chunk fills
        self.args, self.kwargs = args, kwargs
        self.num_rows = num_rows  # size of the data plate in this pass
        self.wrap = wrap or (lambda fn: fn)
        self.valid = num_rows if valid is None else valid  # leading rows that are real (the rest is padding)

    def unwrapped(self):
        """The same chunk for programs already wrapped by :attr:`wrap`."""
        return Chunk(self.rows, self.args, self.kwargs, self.num_rows, None, self.valid)


def probe_structure(model, guide, args, kwargs, data_plate):
    """The site structure of one probe trace of guide and model, without particles (RNG restored)."""
    return site_structure(*probe_traces(model, guide, args, kwargs), data_plate)


def data_plate_frame(model, guide, args, kwargs, data_plate):
    """The data plate's frame, from one probe trace of guide and model (RNG restored)."""
    structure = probe_structure(model, guide, args, kwargs, data_plate)
    check_local(structure)
    if structure.data_frame is None:
        raise ValueError(
            "no plate over data points holds the observed sites; put them in a pyro.plate (name it with data_plate=)")
    return structure.data_frame


def subsample_chunks(model, guide, args, kwargs, data_plate, batch_size):
    """
    Chunks for guides with per-data-point parameters (autoguides, hand-written ``pyro.param`` per point): the
    arguments stay whole and the data plate's subsample indices are set to each chunk (the programs must index
    their data with the plate's indices, Pyro's subsampling idiom). A plate declared with ``subsample_size=s``
    is evaluated ``s`` points at a time (the last chunk padded); a plate without it, all at once.
    """
    frame = data_plate_frame(model, guide, args, kwargs, data_plate)
    num = frame.full_size if frame.full_size is not None else frame.size
    size = frame.size if frame.size < num else num
    device = next((t.device for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)), None)
    chunks = []
    for start in range(0, num, size):
        stop = min(start + size, num)
        index = torch.arange(start, start + size, device=device) % num  # pad the last chunk by wrapping around
        wrap = (lambda idx: lambda fn: SetSubsample({frame.name: idx})(fn))(index)
        chunks.append(Chunk(slice(start, stop), args, kwargs, size, wrap, valid=stop - start))
    return chunks, frame.name


def is_autoguide(guide):
    return isinstance(guide, AutoGuide) or isinstance(getattr(guide, "_guide", None), AutoGuide)


def _has_per_point_params(guide, args, kwargs, batch_size):
    """
    True when a parameter of ``guide`` has one row per data point (leading dim ``N = len(args[0])``): slicing
    the data would then misalign the guide's rows with the data, so the data plate is subsampled instead (always
    correct: a plate without ``subsample_size`` is then evaluated whole).
    """
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() < 1:
        return False
    num = args[0].shape[0]
    if batch_size is None or batch_size >= num:
        return False
    state = get_rng_state()
    try:
        with torch.no_grad(), poutine.block():
            trace = poutine.trace(guide).get_trace(*args, **kwargs)
    except Exception:  # the probe is a heuristic: errors surface in the evaluation itself
        return False
    finally:
        set_rng_state(state)
    return any(s["type"] == "param" and getattr(s["value"], "dim", lambda: 0)() >= 1 and s["value"].shape[0] == num
               for s in trace.nodes.values())


def make_chunks(model, guide, args, kwargs, data_arg, batch_size, data_plate):
    """
    The data chunks of an evaluation and the data plate's name (``None``: inferred per pass). Amortized guides
    slice the data arguments named by ``data_arg``; ``data_arg=None`` keeps them whole and subsamples the data
    plate instead. ``data_arg="auto"`` (the default) chooses ``None`` for Pyro autoguides and for guides with a
    parameter row per data point (leading dim ``len(args[0])``), ``0`` otherwise.
    """
    if data_arg == "auto":
        data_arg = None if is_autoguide(guide) or _has_per_point_params(guide, args, kwargs, batch_size) else 0
    if data_arg is None:
        return subsample_chunks(model, guide, args, kwargs, data_plate, batch_size)
    return [Chunk(rows, a, kw, rows.stop - rows.start) for rows, a, kw in data_chunks(args, kwargs, data_arg, batch_size)], data_plate


def denoising_pair(model, guide):
    """A :class:`~pyro_noisevae.guides.DenoisingGuide` with ``M > 1`` needs its model in the corruption plate."""
    if isinstance(guide, DenoisingGuide) and guide.num_corruptions > 1 and not guide.wraps(model):
        model = guide.wrap_model(model)
    return model, guide


# ----------------------------------------------------------------------------------------------------------
# per-data-point log weights


def check_float(value, name, low=0.0, high=math.inf, closed_high=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not (value > low and (value <= high if closed_high else value < high)):
        raise ValueError(f"{name} must be in ({low}, {high}{']' if closed_high else ')'}, got {value!r}")
    return float(value)


def data_plate_nesting(model, guide, args, kwargs):
    """Plate dims of model and guide (at least one: the data plate), RNG restored."""
    nesting = infer_max_plate_nesting(model, guide, args, kwargs)
    if nesting < 1:
        raise ValueError(
            "model and guide have no vectorized plate; a per-data-point log-likelihood needs the data points in a "
            "pyro.plate that contains every local sample site"
        )
    return nesting


# ----------------------------------------------------------------------------------------------------------
# streaming log-mean-exp
