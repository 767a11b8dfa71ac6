"""Measurements on trained VAEs: analytic KL and active units (:mod:`.latents`), power-law fits with bootstrap
intervals (:mod:`.power_law`), linear and k-NN probes (:mod:`.probes`), MSE and PSNR (:mod:`.image_quality`)."""

from .image_quality import mse, psnr
from .latents import active_units, gaussian_kl_standard_normal
from .power_law import BrokenPowerLawFit, PowerLawFit, fit_broken_power_law, fit_power_law, local_exponents
from .probes import LinearProbe, fit_linear_probe, knn_accuracy

__all__ = [
    "BrokenPowerLawFit",
    "LinearProbe",
    "PowerLawFit",
    "active_units",
    "fit_broken_power_law",
    "fit_linear_probe",
    "fit_power_law",
    "gaussian_kl_standard_normal",
    "knn_accuracy",
    "local_exponents",
    "mse",
    "psnr",
]
