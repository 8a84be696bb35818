#ifndef DDP_DROPOUT_MASK_H
#define DDP_DROPOUT_MASK_H

#include <stddef.h>
#include <stdint.h>

/// Dropout's keep factors for one row of `width` units: out[u] = 0 where
/// uniform(row_key, u) < rate, else `scale`, with uniform the one of CounterRandom:
/// (SplitMix64's finalizer of row_key ^ u·0x9E3779B97F4A7C15) >> 40, times 2⁻²⁴.
void ddp_dropout_keep_row(uint64_t row_key, ptrdiff_t width, float rate, float scale, float *out);

#endif
