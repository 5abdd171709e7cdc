"""infoflow: exact, fast estimates of information flow in noisy deep neural networks.

The core computes the log-density of Gaussian mixtures exactly with compiled CPU
(C++/OpenMP/SIMD) and CUDA kernels; on top of it sit the entropy and mutual-information
estimators of the sample-propagation method of Goldfeld et al., *Estimating Information
Flow in Deep Neural Networks* (ICML 2019), noisy PyTorch modules, samplers, datasets and
the paper's experiments.  All results are in nats unless ``base=`` says otherwise.

``import infoflow`` needs only numpy; the names that need PyTorch (``sample_layers``,
``information_flow``, ``InformationPlane`` and the ``infoflow.nn`` module) import it on
first use.
"""

import importlib

from . import datasets
from ._backend import CUDA_BUILT, build_info, has_cuda
from ._core import build_info as _core_build_info
from .binning import BinningMI, binning_mi
from .density import gaussian_lse, log_density
from .entropy import default_mc_samples, mixture_entropy, mixture_entropy_bounds, noise_entropy
from .estimate import Bounds, Estimate, RConvergence, RConvergenceWarning
from .mutual_information import mi_xt, mi_yt

__version__ = _core_build_info()["version"]  # not build_info(): that initialises CUDA

# name -> module that defines it; loaded on first access (PEP 562) because it needs torch.
_LAZY = {
    "nn": None,
    "sample_layers": "sampling",
    "information_flow": "flow",
    "InformationFlow": "flow",
    "InformationPlane": "flow",
    "plot_information_plane": "flow",
}


def __getattr__(name):
    if name == "HAS_CUDA":  # asked of the CUDA runtime when read, never at import
        return has_cuda()
    if name not in _LAZY:
        raise AttributeError(f"module 'infoflow' has no attribute {name!r}")
    module = importlib.import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + ["HAS_CUDA"])


__all__ = [
    "BinningMI",
    "Bounds",
    "CUDA_BUILT",
    "Estimate",
    "RConvergence",
    "RConvergenceWarning",
    "HAS_CUDA",
    "InformationFlow",
    "InformationPlane",
    "binning_mi",
    "build_info",
    "datasets",
    "default_mc_samples",
    "gaussian_lse",
    "has_cuda",
    "information_flow",
    "log_density",
    "mi_xt",
    "mi_yt",
    "mixture_entropy",
    "mixture_entropy_bounds",
    "nn",
    "noise_entropy",
    "plot_information_plane",
    "sample_layers",
]
