"""Classification of the surviving / untested mutants of pyro_noisevae/guides/denoising_guide.py (tests/guides/)."""
E, B = "equivalent", "blind spot"
TAG = (B, "[D1] the replicate tag that evaluation uses to pool the M copies is never checked. Add "
          "`test_corruption_plate_tags_every_sample_site`: with M = 3, every non-subsample sample site of the guide trace and of "
          "the `wrap_model` trace has `infer[REPLICATE_KEY] == \"corruptions\"` (and the given `plate_name` when set), a site's "
          "existing `infer` entries (e.g. `is_auxiliary`) are kept, and subsample sites carry no tag")
KW_MODEL = (B, "[D2] keywords given to a wrapped model are never checked. Add `test_wrap_model_forwards_keywords`: for M = 1 and "
               "M = 3, `guide.wrap_model(model)(x, num_data=20)` runs the model with `num_data=20` (observed site scale 20/B × 1/M)")
KW_GUIDE = (B, "[D3] M = 1 guide calls with a keyword are never checked: `DenoisingGuide.from_encoder(enc, corr)(x[:5], "
               "num_data=20)` must give z the scale 20/5")
KWARG_INPUT = (B, "[D4] the keyword-input path (`input_arg=\"data\"`) is only tested for its missing-keyword error. Add "
                  "`test_keyword_input_is_corrupted`: a guide `g(*, data, flag)` wrapped with `input_arg=\"data\"` receives a "
                  "corrupted `data` (same shape, not equal to x) and `flag` unchanged, and the caller's kwargs dict is not mutated")
OWNER = (B, "[D5] registration of the module behind a bound-method guide is never checked. Add "
            "`test_bound_method_guide_registers_its_module`: `g = DenoisingGuide(vae.guide, corr)`; `dict(g.named_modules())[\"owner\"] "
            "is vae` and `set(ELBOModule(vae.model, g).parameters()) ⊇ set(vae.parameters())`; a lambda guide registers no owner")
FACTORY_MSG = (B, "the non-callable, non-distribution corruption branch is never run (the test passes a distribution instance, "
                  "which takes the next branch). Add `DenoisingGuide(g, 0.1)` raising `TypeError` matching "
                  "`factory clean -> distribution \\(e\\.g\\. functools\\.partial\\(GaussianCorruption, sigma=0\\.1\\)\\) or None, got float`")
INSTANCE_MSG = (B, "`test_invalid_arguments_raise` matches only `factory`; match `^corruption must be a factory clean -> distribution, "
                   "not a distribution instance; pass e\\.g\\. functools\\.partial\\(GaussianCorruption, sigma=0\\.1\\)$`")
MPN0 = (B, "[D6] max_plate_nesting = 0 (documented `>= 0`) is never used: `DenoisingGuide(g, corr, max_plate_nesting=0, "
           "num_corruptions=2).corrupt(torch.zeros(3))` has shape (2, 3) and plate_dim -1")
INPUT_ARG = (B, "`input_arg=1.5` and `input_arg=True` must raise `TypeError` matching `^input_arg must be a position \\(int\\) or a "
                "keyword \\(str\\), got 1\\.5$`; no test")
IED = (B, "`input_event_dim=-1` and `input_event_dim=1.5` must raise `ValueError` matching `^input_event_dim must be an integer >= 0`; "
          "no test")
IED0 = (B, "[D7] input_event_dim = 0 (scalar data points, x of shape (B,)) is never used. Add `test_scalar_data_points`: "
           "`from_encoder(enc, corr, input_event_dim=0)` on x of shape (B,) samples z of shape (B, z_dim) in a data plate of size B, "
           "and `corrupt` of shape (B,) with M = 2 gives (2, B)")
UNBATCHED = (B, "[D8] an input with zero batch dims is never corrupted. Add `DenoisingGuide(g, corr, num_corruptions=2).corrupt("
                "torch.zeros(3))` of shape (2, 1, 3) (M at plate_dim -2, padded with 1, not 2)")
ENC_MSG = (B, "`DenoisingGuide.from_encoder(\"enc\", corr)` must raise `TypeError` matching `encoder must be callable, got str`; no test")
PLAIN_ENC = (B, "[D9] a plain-function encoder (not an nn.Module) is never used with `from_encoder`: `from_encoder(lambda x: (loc(x), "
                "scale(x)), corr)` must run and register no parameters")
PLATE = (B, "[D10] the data plate of `from_encoder` without `num_data` is never inspected. Add to "
            "`test_corruption_is_not_a_sample_site_and_plate_scales` a call without `num_data` asserting z's frames "
            "`{(name, dim, size)} == {(\"data\", -1, 5), (\"corruptions\", -2, 3)}` (and `{(\"data\", -1, 5)}` for M = 1)")
SHAPE_MSG = (B, "`test_invalid_arguments_raise` matches only `sample has shape`; match `corruption sample has shape \\(3,\\), "
                "expected \\(4, 3\\)` and add a corruption whose `sample` returns a float (message `has shape \\(\\)`)")
TAIL_MSG = (B, "match the end of the shape error: `batch_shape \\+ event_shape == x\\.shape$`")
RAND_CPU = (E + " on CPU", "`device=None`/dropped puts the uniforms (or subsample index) on the CPU; identical on a CPU-only "
                           "machine. Only a CUDA test (skipped without a GPU) could tell")
RAND_DIST = (E + " (in distribution)", "float32 instead of x's dtype for the uniform that decides clean-vs-corrupted rows; the "
                                       "keep probability 1 − α is unchanged up to float32 resolution")
C = {
    "_is_int#1": (B, "`num_corruptions=2.5` and `num_corruptions=True` (also `max_plate_nesting=1.0`) must raise `ValueError`; "
                     "no test passes a float or bool"),
    "_owner#10": (B + " (minor)", "a bound method of a plain object would register that object as `owner` (harmless attribute). "
                                  "Covered by D5's lambda/plain-object case: `not hasattr(g, \"owner\")`"),
    "_ReplicateMessenger.__init__#1": TAG,
    **{f"_ReplicateMessenger._pyro_sample#{i}": TAG for i in (1, 4, 5, 7, 8)},
    "_CorruptionPlateModel.forward#5": KW_MODEL, "_CorruptionPlateModel.forward#17": KW_MODEL,
    "_CorruptionPlateModel.forward#15": TAG,
    "DenoisingGuide.__init__#11": (B, "the test matches only `callable`; match `guide must be callable, got str`"),
    **{f"DenoisingGuide.__init__#{i}": FACTORY_MSG for i in (16, 17, 18, 19, 20)},
    **{f"DenoisingGuide.__init__#{i}": INSTANCE_MSG for i in (22, 24, 25, 26)},
    "DenoisingGuide.__init__#44": MPN0, "DenoisingGuide.__init__#45": MPN0,
    "DenoisingGuide.__init__#47": INPUT_ARG, "DenoisingGuide.__init__#49": INPUT_ARG,
    "DenoisingGuide.__init__#50": IED, "DenoisingGuide.__init__#55": IED,
    "DenoisingGuide.__init__#53": IED0, "DenoisingGuide.__init__#54": IED0,
    **{f"DenoisingGuide.__init__#{i}": OWNER for i in (57, 58, 59, 60)},
    "DenoisingGuide.from_encoder#7": ENC_MSG, "DenoisingGuide.from_encoder#8": ENC_MSG,
    "DenoisingGuide.from_encoder#11": PLAIN_ENC, "DenoisingGuide.from_encoder#42": PLAIN_ENC,
    "DenoisingGuide.from_encoder#14": IED0, "DenoisingGuide.from_encoder#19": IED0,
    "DenoisingGuide.from_encoder#17": (E, "for a 2-dim x, `x.shape[0] == x.shape[-2]`; for 3 or more dims both branches take `x.shape[-2]`"),
    "DenoisingGuide.from_encoder#18": (E, "as #17"),
    "DenoisingGuide.from_encoder#25": PLATE, "DenoisingGuide.from_encoder#26": PLATE, "DenoisingGuide.from_encoder#27": PLATE,
    "DenoisingGuide.from_encoder#28": (E, "`num_data == batch` is handled by the first branch, so `<=` and `<` agree on what reaches here"),
    "DenoisingGuide.from_encoder#29": (B, "`num_data < batch` is never tested: `from_encoder(enc, corr)(x[:5], num_data=3)` must raise "
                                          "`ValueError` matching `num_data=3 is smaller than the batch size 5`"),
    "DenoisingGuide.from_encoder#38": RAND_CPU, "DenoisingGuide.from_encoder#40": RAND_CPU,
    "DenoisingGuide.corrupt#2": (B, "`g.corrupt([1.0])` must raise `TypeError` matching `must be a torch.Tensor, got list`; no test"),
    "DenoisingGuide.corrupt#3": (B, "as corrupt#2"),
    "DenoisingGuide.corrupt#7": UNBATCHED, "DenoisingGuide.corrupt#8": UNBATCHED, "DenoisingGuide.corrupt#21": UNBATCHED,
    **{f"DenoisingGuide.corrupt#{i}": SHAPE_MSG for i in (39, 41, 44, 45, 46)},
    "DenoisingGuide.corrupt#49": TAIL_MSG, "DenoisingGuide.corrupt#50": TAIL_MSG,
    "DenoisingGuide.corrupt#52": (B, "a corruption whose samples are float32 for a float64 x is never used: `corrupt(x).dtype == x.dtype` "
                                     "(user-defined `Masking`-style corruption returning float32)"),
    "DenoisingGuide.corrupt#53": (E + " (in distribution)", "with α = 1 the extra branch draws uniforms and keeps no clean row "
                                  "(`rand >= 1` never holds); only the RNG stream shifts — a test pinning `corrupt` under a fixed "
                                  "seed to the unmixed draw would catch it"),
    "DenoisingGuide.corrupt#54": (E + " (in distribution)", "as corrupt#53"),
    "DenoisingGuide.corrupt#59": RAND_DIST, "DenoisingGuide.corrupt#62": RAND_DIST,
    "DenoisingGuide.corrupt#60": RAND_CPU, "DenoisingGuide.corrupt#63": RAND_CPU,
    "DenoisingGuide.corrupt#64": (E, "`u > α` vs `u >= α` differ only when the uniform equals α exactly (probability ~2^-53)"),
    **{f"DenoisingGuide._replace_input#{i}": KWARG_INPUT for i in (3, 4, 5, 6)},
    "DenoisingGuide.forward#9": KW_GUIDE,
    "DenoisingGuide.forward#11": (B, "the corruption plate's size in the guide is never checked (a size-less plate broadcasts "
                                     "silently): assert the guide trace's corruption frame has size M (see D10)"),
    "DenoisingGuide.forward#14": (B, "as forward#11"),
    "DenoisingGuide.forward#19": TAG,
    "DenoisingGuide.wrap_model#3": (B, "`g.wrap_model(\"model\")` must raise `TypeError` matching `model must be callable, got str`; no test"),
    "DenoisingGuide.wrap_model#4": (B, "as wrap_model#3"),
}
UNWRAP = (B, "[D11] `unwrap_model`/`wraps` run in no test of tests/guides/. Add `test_unwrap_and_wraps`: "
             "`DenoisingGuide.unwrap_model(g.wrap_model(m)) is m`, `unwrap_model(m) is m`, `g.wraps(g.wrap_model(m))`, "
             "`not g.wraps(m)`, and a guide with another M or plate_name does not wrap it")
PREFIX = {"DenoisingGuide.unwrap_model": UNWRAP, "DenoisingGuide.wraps": UNWRAP}
