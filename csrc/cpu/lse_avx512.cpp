// The log-sum-exp kernel for the avx512 instruction set (see lse_kernel.hpp).
// Register tiles: accumulators (Q x V) + V centre vectors + 1 broadcast query must fit
// in the register file (16 vector registers below AVX-512, 32 with it).
#define INFOFLOW_ISA avx512
#define INFOFLOW_VEC_BYTES 64
#define INFOFLOW_TILE_Q_F32 6
#define INFOFLOW_TILE_V_F32 4
#define INFOFLOW_TILE_Q_F64 4
#define INFOFLOW_TILE_V_F64 6
#include "cpu/lse_kernel.hpp"
