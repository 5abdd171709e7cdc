// The log-sum-exp kernel for the avx2 instruction set (see lse_kernel.hpp).
#define INFOFLOW_ISA avx2
#define INFOFLOW_VEC_BYTES 32
#define INFOFLOW_TILE_Q 3
#define INFOFLOW_TILE_V 3
#include "cpu/lse_kernel.hpp"
