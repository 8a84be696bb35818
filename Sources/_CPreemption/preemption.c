#include "preemption.h"
#include <errno.h>
#include <signal.h>
#include <string.h>

static volatile sig_atomic_t received = 0;

/// The first signal asks for a checkpoint at the next step boundary; a second one (an impatient
/// Ctrl-C) gets the signal's default action at once.
static void on_signal(int number) {
    if (received == 0) {
        received = number;
        return;
    }
    signal(number, SIG_DFL);
    raise(number);
}

int ddp_preemption_install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    int signals[] = {SIGTERM, SIGUSR1, SIGINT};
    for (unsigned i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &action, NULL) != 0) return errno;
    }
    return 0;
}

int ddp_preemption_signal(void) { return received; }
