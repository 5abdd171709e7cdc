r"""infoflow on a Dask cluster: the kernel on dask arrays, estimates and experiment sweeps.

Needs ``dask[distributed]`` (``pip install "infoflow[distributed]"``).  Nothing here
approximates: the work is split where the mathematics splits exactly.

- :func:`log_density`, :func:`gaussian_lse` take dask arrays: query blocks are mapped over
  the workers with the compiled kernel; centre blocks give partial log-sums that a
  log-sum-exp tree combines (exact up to the stated rounding).
- :func:`mixture_entropy`, :func:`information_flow`, :func:`layer_information`,
  :func:`mi_xt`, :func:`mi_yt` and the context :func:`estimates_on` draw the Monte Carlo
  queries on the client exactly as locally, run the kernel on the workers and merge the
  moments exactly: the same ``rng`` gives the local estimate up to float64 rounding,
  stderr included.
- :func:`sweep` runs an experiment's seeds (and settings) as Dask tasks and writes each
  run's files as soon as it finishes: ``infoflow reproduce szt --seeds 4 --workers 2``
  or ``--scheduler tcp://host:8786``.

Threads: a kernel task (the estimates) takes all of its worker's threads, one such task at
a time per worker (the kernel is multi-threaded); a sweep runs as many runs at once on a
worker as it has threads, each in a run process of its own with the kernel on its share
(``runs_per_worker=`` fewer, each with more threads).  Start workers with as many threads
as each may use.
"""

try:
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
except ImportError as _exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"infoflow.distributed needs dask[distributed] ({_exc}); install it with "
                      "pip install \"infoflow[distributed]\"") from None

from ._arrays import gaussian_lse, log_density
from ._cluster import connect, local_cluster
from ._entropy import estimates_on, information_flow, layer_information, mi_xt, mi_yt, mixture_entropy
from ._sweep import sweep

__all__ = ["log_density", "gaussian_lse", "mixture_entropy", "information_flow", "layer_information", "mi_xt",
           "mi_yt", "estimates_on", "sweep", "connect", "local_cluster"]
