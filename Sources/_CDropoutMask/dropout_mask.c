#include "dropout_mask.h"

/// The same integer and float operations as `CounterRandom.uniform(rowKey:unit:)` (a test
/// compares the two unit by unit at widths around the vector lengths), in C for one reason:
/// per-CPU code in one binary. On x86-64 Linux with glibc the compiler emits the loop three
/// times and the dynamic loader picks one for the CPU it runs on (an ifunc): with AVX-512DQ
/// (64-bit vector multiplies, vpmullq), with AVX2 (the multiplies emulated from 32-bit
/// halves), or baseline. A build with AVX-512 for all of DDPCore would crash on a CPU without
/// it; this stays safe on any x86-64. Elsewhere (musl, whose loader older clangs' ifuncs
/// fail on; macOS; ARM) it is one plain function.
///
/// One 128 × 256 layer of masks (the default config's) takes 10.7 µs with the AVX-512 loop,
/// 27 µs with the AVX2 loop or the Swift one it replaces: one process 1.018×
/// (docs/PERFORMANCE.md, 'Dropout's mask draw (dropout_mask.c)').
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
__attribute__((target_clones("avx512dq", "avx2", "default")))
#endif
#endif
void ddp_dropout_keep_row(uint64_t row_key, ptrdiff_t width, float rate, float scale, float *out) {
    for (ptrdiff_t unit = 0; unit < width; unit++) {
        uint64_t z = (row_key ^ ((uint64_t)unit * 0x9E3779B97F4A7C15ull)) + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float uniform = (float)(uint32_t)(z >> 40) * 0x1p-24f;
        out[unit] = uniform < rate ? 0.0f : scale;
    }
}
