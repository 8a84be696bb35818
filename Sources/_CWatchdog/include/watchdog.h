// The collective watchdog: no rank waits forever in a collective.
//
// Every blocking MPI call is bracketed by ddp_watchdog_enter/leave, which store what is being
// waited on (the call's name, its element count, the training position, the start time) in
// atomics: a clock read and five stores, no allocation, no lock. A thread started once per
// process checks them a few times a second; when one call has waited longer than the timeout it
// prints which rank, host, call and step were waiting, calls `abort_job` (MPI_Abort: it ends
// every rank of the job) and, if the process still lives a few seconds later (MPI_Abort can
// hang itself when a host is unreachable), `_exit`s with the same code.
//
// This is a C target of its own (not static inline in the _CMPI header) because the state must
// exist once per process, and it does not include mpi.h: the abort is passed in as a function.
#ifndef DDP_WATCHDOG_H
#define DDP_WATCHDOG_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The exit status of a job the watchdog ended (as timeout(1) uses).
#define DDP_WATCHDOG_EXIT_CODE 124

/// Starts the watchdog thread (once; later calls change nothing and return 0). `timeout_seconds`
/// must be positive. `abort_job(code)` ends the whole job. Returns 0, or an errno value when the
/// thread could not be created.
int ddp_watchdog_start(double timeout_seconds, int rank, int size, void (*abort_job)(int code));

/// Marks the start of a blocking call. `call` and `unit` must be static strings (their pointers
/// are kept): e.g. "MPI_Allreduce", 270410, "floats"; "" as unit for a call without a count.
void ddp_watchdog_enter(const char *call, int64_t count, const char *unit);

/// Marks the end of the call begun by the last ddp_watchdog_enter.
void ddp_watchdog_leave(void);

/// Records the training position (1-based epoch and step within it) that the message names.
void ddp_watchdog_set_step(int64_t epoch, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
