// CPU affinity for `ddp bench`'s cross-core check: sched_{get,set}affinity and the CPU_* macros
// need _GNU_SOURCE, which Swift's Glibc module does not define.
#ifndef DDP_AFFINITY_H
#define DDP_AFFINITY_H

/// Writes up to `capacity` CPU numbers this process may run on, in order; returns how many
/// (0 where affinity is unknown or not Linux).
int ddp_allowed_cpus(int *cpus, int capacity);

/// Pins the calling thread to `cpu`; returns 0 or errno.
int ddp_pin_thread(int cpu);

#endif
