#define _GNU_SOURCE
#include "affinity.h"
#include <errno.h>
#ifdef __linux__
#include <sched.h>

int ddp_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++)
        if (CPU_ISSET(cpu, &set)) cpus[count++] = cpu;
    return count;
}

int ddp_pin_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}
#else
int ddp_allowed_cpus(int *cpus, int capacity) { (void)cpus; (void)capacity; return 0; }
int ddp_pin_thread(int cpu) { (void)cpu; return ENOSYS; }
#endif
