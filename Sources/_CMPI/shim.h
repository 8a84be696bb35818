// Thin shim over mpi.h: OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM …) are macros
// over global symbols that Swift cannot import, so each call Swift needs is one static inline
// function here. Every function returns the MPI error code; Swift turns non-zero into an error.
#ifndef CMPI_SHIM_H
#define CMPI_SHIM_H
#include <mpi.h>
#include <stddef.h>

static inline int cmpi_init(void) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return MPI_SUCCESS;
    int rc = MPI_Init(NULL, NULL);
    if (rc != MPI_SUCCESS) return rc;
    // Return codes instead of aborting inside the library, so the caller can name the rank and call.
    return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

static inline int cmpi_is_finalized(void) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    return finalized;
}

static inline int cmpi_finalize(void) { return MPI_Finalize(); }

static inline int cmpi_rank(int *rank) { return MPI_Comm_rank(MPI_COMM_WORLD, rank); }

static inline int cmpi_size(int *size) { return MPI_Comm_size(MPI_COMM_WORLD, size); }

static inline int cmpi_allreduce_sum_float(float *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static inline int cmpi_allreduce_sum_double(double *buffer, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, buffer, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static inline int cmpi_broadcast_bytes(void *buffer, int count, int root) {
    return MPI_Bcast(buffer, count, MPI_BYTE, root, MPI_COMM_WORLD);
}

static inline int cmpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

static inline int cmpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

static inline void cmpi_error_string(int code, char *text, int capacity) {
    int length = 0;
    if (capacity < MPI_MAX_ERROR_STRING) { text[0] = 0; return; }
    MPI_Error_string(code, text, &length);
    text[length] = 0;
}

static inline int cmpi_max_error_string(void) { return MPI_MAX_ERROR_STRING + 1; }

#endif
