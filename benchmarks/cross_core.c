// What a data-parallel step must move between cores, and how fast this machine moves it.
//
// With two ranks on one node, each rank needs the other's gradients for its half of the
// parameters and, after the update, the other's half of the parameters: P/2 floats each way,
// which is the least any exact data-parallel scheme can move (P = parameter count). This probe
// times exactly that exchange through an MPI shared-memory window, the way ddp's node-shared
// update does it, against the same traffic in memory only the rank itself uses. Each round:
//   write: both ranks at once copy a private buffer into their own slot, which the other rank
//          read in the round before (as the update copies its block back into the parameter
//          window), against the same copy into a private buffer;
//   read:  every rank sums the other rank's slot into a private buffer (as a step reads the
//          other rank's gradients and parameters), against its own slot.
//   then, untimed, every rank streams through 4 MiB of its own memory, as a step's forward and
//          backward do between one update and the next (more than a core's L2 on today's x86).
// Each phase sits between barriers and is timed on the slower rank.
// Prints the median microseconds and GB/s of each, over `rounds` rounds.
//   mpicc -O3 -march=native -o /tmp/cross_core benchmarks/cross_core.c   (vectorized, as ddp's SIMD8 loops)
//   mpirun --bind-to core -np 2 /tmp/cross_core [floats per slot, default 135,424: half the default model] [rounds]
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/// sum += source, vectorizable: the two buffers never overlap.
static void accumulate(float *restrict sum, const float *restrict source, long count) {
    for (long i = 0; i < count; i++) sum[i] += source[i];
}

static double median(double *values, int count) {
    qsort(values, count, sizeof(double), compare);
    return values[count / 2];
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long floats = argc > 1 ? atol(argv[1]) : 135424;
    int rounds = argc > 2 ? atoi(argv[2]) : 200;
    if (size != 2) {
        if (rank == 0) fprintf(stderr, "cross_core: run with exactly 2 ranks\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    float *mine;
    MPI_Win window;
    MPI_Win_allocate_shared(floats * (MPI_Aint)sizeof(float), sizeof(float), MPI_INFO_NULL, node, &mine, &window);
    MPI_Aint bytes;
    int unit;
    float *other;
    MPI_Win_shared_query(window, 1 - rank, &bytes, &unit, &other);
    float *sum = calloc(floats, sizeof(float));
    float *update = calloc(floats, sizeof(float)), *scratch = calloc(floats, sizeof(float));
    long trafficFloats = (4L << 20) / sizeof(float);
    float *traffic = calloc(trafficFloats, sizeof(float));
    // Per phase: the window's memory (the other rank's slot, or this rank's), then private memory.
    double *times[4];
    for (int phase = 0; phase < 4; phase++) times[phase] = calloc(rounds, sizeof(double));
    for (int r = -5; r < rounds; r++) {
        for (long i = 0; i < floats; i++) update[i] = (float)(i + r);
        for (int phase = 0; phase < 4; phase++) {
            MPI_Barrier(node);
            double start = MPI_Wtime();
            switch (phase) {
            case 0: memcpy(mine, update, floats * sizeof(float)); break;
            case 1: memcpy(scratch, update, floats * sizeof(float)); break;
            case 2: accumulate(sum, other, floats); break;
            case 3: accumulate(sum, mine, floats); break;
            }
            double elapsed = MPI_Wtime() - start, slowest;
            MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, node);
            if (r >= 0) times[phase][r] = slowest;
        }
        for (long i = 0; i < trafficFloats; i += 16) traffic[i] += 1;
    }
    if (rank == 0) {
        double b = floats * 4.0;
        printf("cross_core: %ld floats (%.0f kB) per rank and direction, median of %d rounds\n", floats, b / 1000, rounds);
        const char *names[4] = {
            "write own slot, read by the other rank", "write private memory (same copy)",
            "read the other rank's slot", "read this rank's own slot",
        };
        double m[4];
        for (int phase = 0; phase < 4; phase++) {
            m[phase] = median(times[phase], rounds);
            printf("  %-40s %8.1f us  %6.1f GB/s\n", names[phase], m[phase] * 1e6, b / m[phase] / 1e9);
        }
        printf("  one step's exchange (parameters written, gradients and parameters read), at these rates: %.1f us\n",
               (m[0] + 2 * m[2]) * 1e6);
    }
    free(sum);
    free(update);
    free(scratch);
    free(traffic);
    for (int phase = 0; phase < 4; phase++) free(times[phase]);
    MPI_Win_free(&window);
    MPI_Comm_free(&node);
    MPI_Finalize();
    return 0;
}
