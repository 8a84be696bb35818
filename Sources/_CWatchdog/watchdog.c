#include "watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

// What the calling thread is waiting in. `started_ns` is 0 outside a call; it is stored last on
// enter (release) and read first by the watchdog (acquire), so the other fields belong to it.
static _Atomic(const char *) current_call;
static _Atomic(const char *) current_unit;
static _Atomic int64_t current_count;
static _Atomic int64_t started_ns;
static _Atomic int64_t current_epoch;
static _Atomic int64_t current_step;

static atomic_int started;
static double timeout;
static int job_rank, job_size;
static char host[256];
static void (*abort_job)(int);

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

void ddp_watchdog_enter(const char *call, int64_t count, const char *unit) {
    atomic_store_explicit(&current_call, call, memory_order_relaxed);
    atomic_store_explicit(&current_unit, unit, memory_order_relaxed);
    atomic_store_explicit(&current_count, count, memory_order_relaxed);
    atomic_store_explicit(&started_ns, now_ns(), memory_order_release);
}

void ddp_watchdog_leave(void) {
    atomic_store_explicit(&started_ns, 0, memory_order_release);
}

void ddp_watchdog_set_step(int64_t epoch, int64_t step) {
    atomic_store_explicit(&current_epoch, epoch, memory_order_relaxed);
    atomic_store_explicit(&current_step, step, memory_order_relaxed);
}

/// Ends the process a few seconds after the abort began, if the abort itself hangs.
static void *exit_later(void *unused) {
    (void)unused;
    sleep(5);
    fprintf(stderr, "ddp: watchdog: rank %d: MPI_Abort did not end the process within 5 s; exiting\n", job_rank);
    fflush(stderr);
    _exit(DDP_WATCHDOG_EXIT_CODE);
    return NULL;
}

static void expire(int64_t waited_ns) {
    const char *call = atomic_load_explicit(&current_call, memory_order_relaxed);
    const char *unit = atomic_load_explicit(&current_unit, memory_order_relaxed);
    int64_t count = atomic_load_explicit(&current_count, memory_order_relaxed);
    int64_t epoch = atomic_load_explicit(&current_epoch, memory_order_relaxed);
    int64_t step = atomic_load_explicit(&current_step, memory_order_relaxed);
    char what[96] = "";
    if (unit && unit[0]) snprintf(what, sizeof what, " (%lld %s)", (long long)count, unit);
    char position[96] = "before the first training step";
    if (epoch > 0) snprintf(position, sizeof position, "at epoch %lld, step %lld", (long long)epoch, (long long)step);
    fprintf(stderr,
            "ddp: watchdog: rank %d of %d (host %s) has waited %.1f s in %s%s %s, past "
            "distributed.timeout_seconds = %g: a rank or host of the job is lost or stuck; ending the job\n",
            job_rank, job_size, host, (double)waited_ns / 1e9, call ? call : "?", what, position, timeout);
    fflush(stderr);
    pthread_t reaper;
    if (pthread_create(&reaper, NULL, exit_later, NULL) != 0) _exit(DDP_WATCHDOG_EXIT_CODE);
    abort_job(DDP_WATCHDOG_EXIT_CODE);
    pthread_join(reaper, NULL);  // MPI_Abort returned without ending the process: the reaper will.
}

static void *watch(void *unused) {
    (void)unused;
    // Check four times per timeout, at most once a second: a late detection by ≤ 25 %.
    double interval = timeout / 4 < 1 ? timeout / 4 : 1;
    struct timespec pause = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)};
    int64_t limit_ns = (int64_t)(timeout * 1e9);
    for (;;) {
        nanosleep(&pause, NULL);
        int64_t since = atomic_load_explicit(&started_ns, memory_order_acquire);
        if (since == 0) continue;
        int64_t waited = now_ns() - since;
        if (waited > limit_ns) expire(waited);
    }
    return NULL;
}

int ddp_watchdog_start(double timeout_seconds, int rank, int size, void (*abort_function)(int code)) {
    if (atomic_exchange(&started, 1)) return 0;
    timeout = timeout_seconds;
    job_rank = rank;
    job_size = size;
    abort_job = abort_function;
    if (gethostname(host, sizeof host - 1) != 0) strcpy(host, "?");
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attributes, watch, NULL);
    pthread_attr_destroy(&attributes);
    if (rc != 0) atomic_store(&started, 0);
    return rc;
}
