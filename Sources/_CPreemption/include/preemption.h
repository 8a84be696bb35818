// Preemption requests: SIGTERM, SIGUSR1 or SIGINT only set a flag (all an async-signal-safe
// handler may do); the trainer reads it once per step and lets it ride that step's collective,
// so every rank stops at the same step boundary. Process-wide state, so a target of its own.
#ifndef DDP_PREEMPTION_H
#define DDP_PREEMPTION_H

/// The exit status of a run that stopped on a signal after writing its checkpoint
/// (EX_TEMPFAIL: the run did not finish; `--resume` continues it).
#define DDP_PREEMPTED_EXIT_CODE 75

/// Installs the handlers (SA_RESTART, so blocking calls continue): the first signal sets the
/// flag, a second one takes the signal's default action. Returns 0 or errno.
int ddp_preemption_install(void);

/// The number of the first signal received since the install, or 0.
int ddp_preemption_signal(void);

#endif
