"""The ``uvb-denoise`` and ``walk-jump`` subcommands."""

import argparse

from pyro_noisevae.experiments import empirical_bayes as exp


def test_register_adds_subcommands():
    parser = argparse.ArgumentParser()
    exp.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["uvb-denoise", "--sigmas", "0.5", "--epochs", "2", "--out", "x"])
    assert args.command == "uvb-denoise" and args.sigmas == [0.5] and args.epochs == 2
    args = parser.parse_args(["walk-jump", "--num-steps", "100", "--eps-scale", "1.0"])
    assert args.command == "walk-jump" and args.num_steps == 100 and args.eps_scale == 1.0


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--data-root", str(tmp_path / "nowhere"), "--no-progress"]
    assert exp.main(["uvb-denoise", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyro-noisevae uvb-denoise: error: dataset 'mnist' not found") and "Traceback" not in err
