"""Evaluation in data chunks: a guide with per-point parameters, walked through its data plate, gives exact answers."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_noisevae.evaluation import importance_estimate


def _per_point_pair(lg, x, subsample_size):
    """Model and exact-posterior guide with one (loc, scale) row per data point, indexed by the plate."""
    loc, scale = lg.posterior(x)

    def model(x):
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(idx), lg.z_dim), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ lg.W.T + lg.b, lg.s).to_event(1), obs=x[idx])

    def guide(x):
        loc_p = pyro.param("loc", loc.clone())
        with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
            pyro.sample("z", dist.Normal(loc_p[idx], scale[idx]).to_event(1))

    return model, guide


@pytest.mark.parametrize("data_arg", [None, "auto"])
@pytest.mark.parametrize("subsample_size", [3, 7, None])
def test_chunked_evaluation_equals_single_batch(linear_gaussian, data_arg, subsample_size):
    """N = 7 points walked through the data plate 3 at a time (the last chunk padded by wrapping around), or whole:
    every point gets its own exact log p(x), in order (the exact posterior makes every weight equal p(x))."""
    lg = linear_gaussian
    x = lg.sample(7)
    model, guide = _per_point_pair(lg, x, subsample_size)
    est = importance_estimate(model, guide, x, num_samples=4, chunk_size=2, batch_size=3, data_arg=data_arg,
                              progress=False)
    assert est.log_px.shape == (7,)
    torch.testing.assert_close(est.log_px, lg.log_px(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(est.elbo, lg.log_px(x), rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------ argument checks, one by one

import math  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402
from pyro import poutine  # noqa: E402
from pyro.infer.autoguide import AutoNormal  # noqa: E402

from pyro_noisevae.evaluation.chunks import (  # noqa: E402
    Chunk,
    check_data,
    check_float,
    check_nesting,
    check_positive_int,
    check_programs,
    data_chunks,
    data_plate_frame,
    data_plate_nesting,
    denoising_pair,
    is_autoguide,
    make_chunks,
    subsample_chunks,
)
from pyro_noisevae.guides import DenoisingGuide  # noqa: E402


def _raises(exc, message):
    """pytest.raises matching the whole message."""
    return pytest.raises(exc, match=f"^{re.escape(message)}$")


def test_check_positive_int():
    assert check_positive_int(3, "k") == 3
    value = check_positive_int(np.int64(4), "k")  # any Integral, returned as a Python int
    assert value == 4 and type(value) is int
    assert check_positive_int(None, "k", allow_none=True) is None
    for bad in (0, -2, 2.0, True, "3", None):
        with _raises(ValueError, f"k must be an integer >= 1, got {bad!r}"):
            check_positive_int(bad, "k")
    for bad in (0, False):
        with _raises(ValueError, f"batch_size must be an integer >= 1 or None, got {bad!r}"):
            check_positive_int(bad, "batch_size", allow_none=True)


def test_check_nesting():
    assert check_nesting(None) is None
    assert check_nesting(1) == 1
    value = check_nesting(np.int64(2))
    assert value == 2 and type(value) is int
    for bad in (0, -1, True, 1.0, "2"):
        with _raises(ValueError, "max_plate_nesting must be None (inferred) or an integer >= 1 (the data plate counts "
                                 f"as one), got {bad!r}"):
            check_nesting(bad)


def test_check_programs():
    assert check_programs(print, len) is None
    with _raises(TypeError, "model must be a callable Pyro program, got str"):
        check_programs("model", len)
    with _raises(TypeError, "guide must be a callable Pyro program, got int"):
        check_programs(len, 3)


def test_check_float():
    assert check_float(1, "lr") == 1.0 and type(check_float(1, "lr")) is float
    assert check_float(1e-300, "lr") == 1e-300  # any positive number: the interval is open at 0
    assert check_float(1.0, "lr_decay", high=1.0) == 1.0  # and closed at high
    assert check_float(0.5, "p", high=1.0, closed_high=False) == 0.5
    for bad in (math.nan, math.inf, -math.inf, True, "0.1", None):
        with _raises(ValueError, f"lr must be a finite number, got {bad!r}"):
            check_float(bad, "lr")
    for bad in (0, 0.0, -1e-9):
        with _raises(ValueError, f"lr must be in (0.0, inf], got {bad!r}"):
            check_float(bad, "lr")
    with _raises(ValueError, "lr_decay must be in (0.0, 1.0], got 1.5"):
        check_float(1.5, "lr_decay", high=1.0)
    with _raises(ValueError, "p must be in (0.0, 1.0), got 1.0"):
        check_float(1.0, "p", high=1.0, closed_high=False)
    with _raises(ValueError, "s must be in (-1.0, 1.0], got -1.0"):
        check_float(-1.0, "s", low=-1.0, high=1.0)
    assert check_float(-0.5, "s", low=-1.0) == -0.5


def test_check_data_names_what_is_wrong():
    x, y = torch.randn(3, 2), torch.arange(3)
    assert check_data((x,), {}, 0) == ((0,), 3)
    assert check_data((x, 1.0, y), {"w": x}, [0, -1, "w"]) == ((0, -1, "w"), 3)  # integer data are fine too
    with _raises(ValueError, "data_arg must name at least one argument"):
        check_data((x,), {}, ())
    for bad in (1.5, True, None):
        with _raises(TypeError, f"data_arg must be a position (int), a keyword (str) or a tuple of them, got {bad!r}"):
            check_data((x,), {}, (0, bad))
    with _raises(TypeError, "data_arg='y': the keyword argument 'y' was not passed"):
        check_data((x,), {"x": x}, "y")
    for key in (1, -2):
        with _raises(TypeError, f"data_arg={key}: only 1 positional argument(s) were passed; pass the data "
                                "positionally (e.g. log_likelihood(model, guide, x)) or name its keyword with "
                                "data_arg='x'"):
            check_data((x,), {}, key)
    with _raises(TypeError, "the data argument 'x' must be a torch.Tensor whose first dim indexes data points, "
                            "got list"):
        check_data((), {"x": [1.0]}, "x")
    with _raises(ValueError, "the data argument 0 must have at least one data point along dim 0, got shape ()"):
        check_data((torch.tensor(1.0),), {}, 0)
    with _raises(ValueError, "the data argument 0 must have at least one data point along dim 0, got shape (0, 2)"):
        check_data((torch.zeros(0, 2),), {}, 0)
    for bad in (math.nan, math.inf):
        with _raises(ValueError, "the data argument 0 contains NaN or infinite values; clean or impute them first"):
            check_data((torch.tensor([[0.0, bad]]),), {}, 0)
    with _raises(ValueError, "the data arguments (0, 'y') have different numbers of rows (3 vs 4)"):
        check_data((x,), {"y": torch.zeros(4)}, (0, "y"))


def test_data_chunks_slice_only_the_data_arguments():
    x, y, w = torch.arange(14.0).reshape(7, 2), torch.arange(7), torch.ones(5)
    chunks = list(data_chunks((x, w), {"y": y, "flag": 1}, (0, "y"), 3))
    assert [rows for rows, _, _ in chunks] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    for rows, args, kwargs in chunks:
        assert torch.equal(args[0], x[rows]) and args[1] is w  # the other arguments are passed unchanged
        assert torch.equal(kwargs["y"], y[rows]) and kwargs["flag"] == 1
        assert isinstance(args, tuple)
    ((rows, args, kwargs),) = data_chunks((x,), {}, 0, None)  # batch_size None: all at once
    assert rows == slice(0, 7) and torch.equal(args[0], x) and kwargs == {}


def test_chunk_defaults_and_unwrapped():
    def fn():
        return 1

    c = Chunk(slice(2, 4), (1,), {"a": 2}, 3)
    assert c.wrap(fn) is fn and c.valid == 3 and c.num_rows == 3
    wrapped = Chunk(slice(2, 4), (1,), {"a": 2}, 3, wrap=lambda f: "wrapped", valid=2)
    plain = wrapped.unwrapped()
    assert wrapped.wrap(fn) == "wrapped" and plain.wrap(fn) is fn
    assert (plain.rows, plain.args, plain.kwargs, plain.num_rows, plain.valid) == (slice(2, 4), (1,), {"a": 2}, 3, 2)


def _plate_model(x, subsample_size=None):
    with pyro.plate("data", x.shape[0], subsample_size=subsample_size) as idx:
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[idx])


def test_subsample_chunks_walk_the_data_plate(linear_gaussian):
    x = torch.arange(7.0)
    guide = lambda x, subsample_size=None: None  # noqa: E731
    chunks, name = subsample_chunks(_plate_model, guide, (x,), {"subsample_size": 3}, None, 3)
    assert name == "data"
    assert [c.rows for c in chunks] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert [(c.num_rows, c.valid) for c in chunks] == [(3, 3), (3, 3), (3, 1)]
    seen = []
    for c in chunks:
        trace = poutine.trace(c.wrap(_plate_model)).get_trace(*c.args, **c.kwargs)
        seen.append(trace.nodes["x"]["value"].tolist())
        assert c.args[0] is x
    assert seen == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 0.0, 1.0]]  # the last chunk padded by wrapping around
    # a plate without subsample_size: all points at once, whatever the batch size
    (whole,), _ = subsample_chunks(_plate_model, guide, (x,), {}, "data", 3)
    assert (whole.rows, whole.num_rows, whole.valid) == (slice(0, 7), 7, 7)
    trace = poutine.trace(whole.wrap(_plate_model)).get_trace(x)
    assert trace.nodes["x"]["value"].tolist() == x.tolist()


def test_data_plate_frame_errors(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(3)
    frame = data_plate_frame(lg.model, lg.guide(), (x,), {}, None)
    assert (frame.name, frame.size, frame.dim) == ("data", 3, -1)

    def model(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand(x.shape).to_event(2), obs=x)

    with _raises(ValueError, "no plate over data points holds the observed sites; put them in a pyro.plate (name it "
                             "with data_plate=)"):
        data_plate_frame(model, lambda x: None, (x,), {}, None)

    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    with pytest.raises(ValueError, match=re.escape("latent sites ['mu'] are global (outside the data plate 'data')")):
        data_plate_frame(global_model, lambda x: pyro.sample("mu", dist.Normal(0.0, 1.0)), (torch.zeros(3),), {}, None)


def test_data_plate_nesting():
    def flat(x):
        pyro.sample("x", dist.Normal(0.0, 1.0).expand(x.shape).to_event(1), obs=x)

    with _raises(ValueError, "model and guide have no vectorized plate; a per-data-point log-likelihood needs the data "
                             "points in a pyro.plate that contains every local sample site"):
        data_plate_nesting(flat, lambda x: None, (torch.zeros(3),), {})
    assert data_plate_nesting(_plate_model, lambda x: None, (torch.zeros(3),), {}) == 1

    def nested(x):
        with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("cols", x.shape[1]):
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    assert data_plate_nesting(nested, lambda x: None, (torch.zeros(3, 2),), {}) == 2


def test_is_autoguide(linear_gaussian):
    auto = AutoNormal(linear_gaussian.model)
    assert is_autoguide(auto)
    assert is_autoguide(DenoisingGuide(auto, None))  # a wrapper holding an autoguide as _guide
    assert not is_autoguide(linear_gaussian.guide())
    assert not is_autoguide(DenoisingGuide(linear_gaussian.guide(), None))


def _per_point_guide(lg, x, extra_scalar=True):
    loc, scale = lg.posterior(x)

    def guide(x):
        if extra_scalar:
            pyro.param("temperature", torch.tensor(1.0))  # a scalar parameter is no per-point row
        loc_p = pyro.param("loc", loc.clone())
        with pyro.plate("data", x.shape[0]) as idx:
            pyro.sample("z", dist.Normal(loc_p[idx], scale[idx]).to_event(1))

    return guide


def test_make_chunks_auto_detects_per_point_parameters(linear_gaussian):
    lg = linear_gaussian
    x = lg.sample(7)
    # amortized guide: the data are sliced (and the data plate name is passed through)
    chunks, name = make_chunks(lg.model, lg.guide(), (x,), {}, "auto", 3, "data")
    assert name == "data" and [c.args[0].shape[0] for c in chunks] == [3, 3, 1]
    # a parameter row per point: the data stay whole and the plate is subsampled (here: evaluated whole)
    guide = _per_point_guide(lg, x)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    with poutine.trace() as outer:
        chunks, name = make_chunks(lg.model, guide, (x,), {}, "auto", 3, None)
    assert torch.equal(torch.get_rng_state(), state)  # the probe leaves the RNG where it was ...
    assert len(outer.trace.nodes) == 0  # ... and is hidden from handlers around the call
    assert name == "data" and len(chunks) == 1 and chunks[0].args[0] is x and chunks[0].num_rows == 7
    # no slicing needed when one batch holds every point; explicit data_arg is obeyed
    for batch_size in (7, 8, None):
        (chunk,), _ = make_chunks(lg.model, guide, (x,), {}, "auto", batch_size, None)
        assert chunk.wrap(len) is len  # a slice, not a subsample
    chunks, _ = make_chunks(lg.model, guide, (x,), {}, 0, 3, None)
    assert len(chunks) == 3
    # autoguides always subsample
    auto = AutoNormal(lg.model)
    (chunk,), name = make_chunks(lg.model, auto, (x,), {}, "auto", None, None)
    assert name == "data" and chunk.wrap(len) is not len
    # a guide that fails in the probe, or data passed by keyword only: sliced (errors surface in the evaluation)
    (chunk, *_), _ = make_chunks(lg.model, lambda x: 1 / 0, (x,), {}, "auto", 3, None)
    assert chunk.args[0].shape[0] == 3
    chunks, _ = make_chunks(lg.model, guide, (), {"x": x}, "x", 3, None)
    assert [c.kwargs["x"].shape[0] for c in chunks] == [3, 3, 1]


def test_denoising_pair_wraps_the_model_once_for_several_corruptions(linear_gaussian):
    lg = linear_gaussian
    g2 = DenoisingGuide(lg.guide(), None, num_corruptions=2)
    model, guide = denoising_pair(lg.model, g2)
    assert guide is g2 and g2.wraps(model) and DenoisingGuide.unwrap_model(model) == lg.model
    assert denoising_pair(model, g2)[0] is model  # already wrapped
    g1 = DenoisingGuide(lg.guide(), None, num_corruptions=1)
    model = lg.model
    assert denoising_pair(model, g1)[0] is model  # M = 1 needs no plate
    plain = lg.guide()
    assert denoising_pair(lg.model, plain) == (lg.model, plain)


def test_negative_positions_and_the_rows_of_sliced_chunks():
    x = torch.arange(14.0).reshape(7, 2)
    assert check_data((x,), {}, -1) == ((-1,), 7)  # -len(args) is a valid position
    chunks, _ = make_chunks(None, lambda x: None, (x,), {}, 0, 3, None)
    assert [c.rows for c in chunks] == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert [c.num_rows for c in chunks] == [c.valid for c in chunks] == [3, 3, 1]


def test_per_point_parameters_of_scalar_data_and_keyword_arguments_are_detected():
    # 1-D data (one scalar per point) and a 1-D parameter per point, the guide needing a keyword argument
    x = torch.arange(7.0)

    def guide(x, *, spread):
        loc = pyro.param("loc", torch.zeros(7))
        with pyro.plate("data", x.shape[0]) as idx:
            pyro.sample("z", dist.Normal(loc[idx], spread))

    def model(x, *, spread):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    (chunk,), name = make_chunks(model, guide, (x,), {"spread": 1.0}, "auto", 3, None)
    assert name == "data" and chunk.args[0] is x and chunk.wrap(len) is not len  # subsampled, not sliced
