// The log-sum-exp kernel for the generic instruction set (see lse_kernel.hpp).
#define INFOFLOW_ISA generic
#define INFOFLOW_VEC_BYTES 16
#define INFOFLOW_TILE_Q 3
#define INFOFLOW_TILE_V 3
#include "cpu/lse_kernel.hpp"
