"""The ``uvb-denoise`` and ``walk-jump`` subcommands."""

import argparse

from pyro_noisevae.experiments import empirical_bayes as exp


def test_register_adds_subcommands():
    parser = argparse.ArgumentParser()
    exp.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["uvb-denoise", "--sigmas", "0.5", "--epochs", "2", "--out", "x"])
    assert args.command == "uvb-denoise" and args.sigmas == [0.5] and args.epochs == 2
    assert args.capacity == "default" and args.seeds is None
    args = parser.parse_args(["uvb-denoise", "--capacity", "matched", "--seeds", "0", "1", "2"])
    assert args.capacity == "matched" and args.seeds == [0, 1, 2]
    args = parser.parse_args(["walk-jump", "--num-steps", "100", "--eps-scale", "1.0"])
    assert args.command == "walk-jump" and args.num_steps == 100 and args.eps_scale == [1.0] and args.chains == 1
    args = parser.parse_args(["walk-jump", "--chains", "16", "--eps-scale", "0.5", "1.0"])
    assert args.chains == 16 and args.eps_scale == [0.5, 1.0] and args.num_steps is None


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--data-root", str(tmp_path / "nowhere"), "--no-progress"]
    assert exp.main(["uvb-denoise", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyro-noisevae uvb-denoise: error: dataset 'mnist' not found") and "Traceback" not in err


def test_options_of_the_variants_are_refused_alone(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--no-progress"]
    assert exp.main(["uvb-denoise", "--seeds", "0", "1", *argv]) == 2
    assert "--seeds goes with --capacity matched" in capsys.readouterr().err
    assert exp.main(["walk-jump", "--eps-scale", "0.5", "1.0", *argv]) == 2
    assert "several --eps-scale values go with --chains > 1" in capsys.readouterr().err
