// The log-sum-exp kernel for the avx512 instruction set (see lse_kernel.hpp).
#define INFOFLOW_ISA avx512
#define INFOFLOW_VEC_BYTES 64
#define INFOFLOW_TILE_Q 6
#define INFOFLOW_TILE_V 4
#include "cpu/lse_kernel.hpp"
