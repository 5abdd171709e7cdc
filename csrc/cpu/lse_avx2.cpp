// The log-sum-exp kernel for the avx2 instruction set (see lse_kernel.hpp).
// Register tiles: accumulators (Q x V) + V centre vectors + 1 broadcast query must fit
// in the register file (16 vector registers below AVX-512, 32 with it).
#define INFOFLOW_ISA avx2
#define INFOFLOW_VEC_BYTES 32
#define INFOFLOW_TILE_Q_F32 3
#define INFOFLOW_TILE_V_F32 3
#define INFOFLOW_TILE_Q_F64 3
#define INFOFLOW_TILE_V_F64 3
#include "cpu/lse_kernel.hpp"
