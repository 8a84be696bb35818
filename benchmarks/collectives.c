// Collective costs for the scaling model (launch/scaling-model): the median time of
// MPI_Allreduce, MPI_Reduce_scatter_block and MPI_Allgather (floats, in place where ddp is) for
// message sizes from 64 B to 4 MiB, each repeated `reps` times after a barrier.
// Prints CSV lines: collective,ranks,bytes,seconds (bytes: the whole buffer, as in ddp).
//   mpicc -O2 -o /tmp/collectives benchmarks/collectives.c
//   mpirun -np 2 /tmp/collectives [reps]
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    long sizes[] = {64, 4096, 65536, 262144, 1048576, 4194304};
    float *buffer = calloc(4194304 / 4 + 64, 4), *block = calloc(4194304 / 4 + 64, 4);
    double *times = calloc(reps, sizeof(double));
    const char *names[] = {"allreduce", "reduce_scatter", "allgather"};
    for (int kind = 0; kind < 3; kind++) {
        for (unsigned s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int count = (int)(sizes[s] / 4);
            count -= count % size;
            if (count < size) count = size;
            for (int r = 0; r < reps; r++) {
                MPI_Barrier(MPI_COMM_WORLD);
                double start = MPI_Wtime();
                if (kind == 0) MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                if (kind == 1) MPI_Reduce_scatter_block(buffer, block, count / size, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                if (kind == 2) MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, count / size, MPI_FLOAT, MPI_COMM_WORLD);
                double elapsed = MPI_Wtime() - start, slowest = 0;
                MPI_Allreduce(&elapsed, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                times[r] = slowest;
            }
            qsort(times, reps, sizeof(double), compare);
            if (rank == 0) printf("%s,%d,%d,%.9f\n", names[kind], size, count * 4, times[reps / 2]);
        }
    }
    MPI_Finalize();
    return 0;
}
