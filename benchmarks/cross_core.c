// What a data-parallel step must move between cores, and how fast this machine moves it.
//
// With two ranks on one node, each rank needs the other's gradients for its half of the
// parameters and, after the update, the other's half of the parameters: P/2 floats each way,
// which is the least any exact data-parallel scheme can move (P = parameter count). This probe
// times exactly that exchange through an MPI shared-memory window, the way ddp's node-shared
// update does it, against the same reads of memory the rank wrote itself:
//   each round: every rank writes its slot (as backward writes its gradients), barrier,
//   then every rank reads the other rank's slot and sums it into a private buffer (timed), barrier;
//   the same with the rank's own slot (the local baseline).
// Prints the median microseconds per exchange and GB/s, over `rounds` rounds.
//   mpicc -O3 -march=native -o /tmp/cross_core benchmarks/cross_core.c   (vectorized, as ddp's SIMD8 loops)
//   mpirun --bind-to core -np 2 /tmp/cross_core [floats per slot, default 135,424: half the default model] [rounds]
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

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
    double *remote = calloc(rounds, sizeof(double)), *local = calloc(rounds, sizeof(double));
    for (int r = -5; r < rounds; r++) {
        for (int pass = 0; pass < 2; pass++) {
            for (long i = 0; i < floats; i++) mine[i] = (float)(i + r);
            MPI_Barrier(node);
            const float *source = pass == 0 ? other : mine;
            double start = MPI_Wtime();
            accumulate(sum, source, floats);
            double elapsed = MPI_Wtime() - start, slowest;
            MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, node);
            if (r >= 0) (pass == 0 ? remote : local)[r] = slowest;
            MPI_Barrier(node);
        }
    }
    if (rank == 0) {
        double m = median(remote, rounds), l = median(local, rounds), b = floats * 4.0;
        printf("cross_core: %ld floats (%.0f kB) per rank and direction, median of %d rounds\n", floats, b / 1000, rounds);
        printf("  the other rank's slot: %8.1f us  %6.1f GB/s\n", m * 1e6, b / m / 1e9);
        printf("  this rank's own slot:  %8.1f us  %6.1f GB/s\n", l * 1e6, b / l / 1e9);
        printf("  one step's exchange (gradients in, parameters in: 2 x %.0f kB per rank), at the cross-core rate: %.1f us\n",
               b / 1000, 2 * m * 1e6);
    }
    free(sum);
    free(remote);
    free(local);
    MPI_Win_free(&window);
    MPI_Comm_free(&node);
    MPI_Finalize();
    return 0;
}
