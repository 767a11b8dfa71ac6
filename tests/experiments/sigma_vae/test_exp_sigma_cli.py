"""The ``sweep-sigma`` and ``noisy-inference`` subcommands: explicit command lines, user errors as exit 2."""

import json

from pyro_noisevae.cli import main as cli_main
from pyro_noisevae.experiments.sigma_vae import main as module_main


def test_cli_subcommands(sigma_runs, tmp_path, data_root, capsys):
    common = ["--epochs", "1", "--train-size", "200", "--batch-size", "50", "--z-dim", "3", "--hidden-dims", "16",
              "--eval-size", "100", "--seed", "1", "--data-root", str(data_root), "--runs", str(sigma_runs),
              "--no-progress"]
    out = tmp_path / "cli_power"
    rc = cli_main(["sweep-sigma", "--sigmas", "0.1", "0.3", "0.5", "--families", "normal", "--num-bootstrap", "200",
                   "--out", str(out), *common])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert res["command"].startswith("pyro-noisevae sweep-sigma --sigmas 0.1 0.3 0.5 ")
    capsys.readouterr()
    assert module_main(["sweep-sigma", "--sigmas", "0.1", "-0.3", "0.5", "--out", str(out), *common]) == 2
    assert capsys.readouterr().err == ("pyro-noisevae sweep-sigma: error: sigmas must all be finite and > 0, got "
                                       "[0.1, -0.3, 0.5]\n")
    assert cli_main(["noisy-inference", "--noise-levels", "0", "1", "--figure-levels", "0.5", "--out", str(out),
                     *common]) == 2
