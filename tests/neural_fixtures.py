"""Models used by the validation tests (imported by the CLI as tests.neural_fixtures:...)."""

import numpy as np

from mfgpde.closed_forms import CNFGaussian, ou_mixture_density_and_score

EXACT = CNFGaussian(1.0, 0.5, lam=1.0)
MIX = dict(weights=[0.4, 0.6], means=[[-1.5], [1.2]], covs=[0.09, 0.16])


def exact_velocity(x, t):
    return EXACT.velocity(t, x)


def perturbed_velocity(x, t, eps=0.2):
    return EXACT.velocity(t, x) + eps * np.sin(x)


def exact_potential(x, t):
    return EXACT.U(t, x[:, 0])


def perturbed_potential(x, t, eps=0.2):
    return EXACT.U(t, x[:, 0]) + eps * np.sin(x[:, 0])


def nan_velocity(x, t):
    v = EXACT.velocity(t, x)
    if t > 0.5:
        v[3] = np.nan
    return v


def wrong_shape(x, t):
    return np.zeros((x.shape[0] + 1, 1))


def raising(x, t):
    raise KeyError("layer_3")


def exact_score(x, t):
    return ou_mixture_density_and_score(MIX["weights"], MIX["means"], MIX["covs"], t, x)[1]


def perturbed_score(x, t, eps=0.3):
    return exact_score(x, t) + eps * np.cos(x)


def exact_log_density(x, t):
    return np.log(ou_mixture_density_and_score(MIX["weights"], MIX["means"], MIX["covs"], t, x)[0])


def perturbed_log_density(x, t, eps=0.3):
    return exact_log_density(x, t) + eps * np.sin(x[:, 0])


def hanging(x, t):
    """A model that never answers in time (the zoo's --model-timeout must stop it)."""
    import time

    time.sleep(60)
    return x
