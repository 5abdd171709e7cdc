"""infoflow: exact, fast estimates of information flow in noisy deep neural networks.

The core computes the log-density of Gaussian mixtures exactly with compiled CPU
(C++/OpenMP/SIMD) and CUDA kernels; on top of it sit the entropy estimators of the
sample-propagation method of Goldfeld et al., *Estimating Information Flow in Deep
Neural Networks* (ICML 2019).  All results are in nats unless ``base=`` says otherwise.
"""

from ._backend import CUDA_BUILT, HAS_CUDA, build_info
from .density import gaussian_lse, log_density
from .entropy import default_mc_samples, mixture_entropy, mixture_entropy_bounds, noise_entropy
from .estimate import Bounds, Estimate

__version__ = build_info()["version"]

__all__ = [
    "Bounds",
    "CUDA_BUILT",
    "Estimate",
    "HAS_CUDA",
    "build_info",
    "default_mc_samples",
    "gaussian_lse",
    "log_density",
    "mixture_entropy",
    "mixture_entropy_bounds",
    "noise_entropy",
]
