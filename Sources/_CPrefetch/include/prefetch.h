#ifndef DDP_PREFETCH_H
#define DDP_PREFETCH_H

/// Asks the CPU to start loading the cache line at `address` (for reading, into every cache
/// level) without waiting for it: Swift has no prefetch of its own.
static inline void ddp_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
