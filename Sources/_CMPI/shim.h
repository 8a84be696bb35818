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

// The MPI library's version text (MPI_Get_library_version, callable before MPI_Init), into
// `text` of `capacity` bytes, NUL-terminated.
static inline int cmpi_library_version(char *text, int capacity) {
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    int rc = MPI_Get_library_version(version, &length);
    if (rc != MPI_SUCCESS || capacity < 1) return rc;
    int count = length < capacity - 1 ? length : capacity - 1;
    for (int i = 0; i < count; i++) text[i] = version[i];
    text[count] = 0;
    return MPI_SUCCESS;
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

// ZeRO-1's two halves: every rank contributes the whole gradient and receives the sum of its own
// block, in buckets, nonblocking (rank r receives counts[r] floats of each bucket's sum, those
// after counts[0] + … + counts[r - 1]; started while backward still runs, finished before the
// update); then every rank contributes its block of parameters and receives all of them.
static inline int cmpi_ireduce_scatter_sum_float(const float *send, float *receive, const int *counts, MPI_Request *request) {
    return MPI_Ireduce_scatter(send, receive, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, request);
}

static inline int cmpi_testall(int count, MPI_Request *requests, int *done) {
    return MPI_Testall(count, requests, done, MPI_STATUSES_IGNORE);
}

static inline int cmpi_waitall(int count, MPI_Request *requests) {
    return MPI_Waitall(count, requests, MPI_STATUSES_IGNORE);
}

/// In place: rank r's block is already at buffer[r * block].
static inline int cmpi_allgather_in_place_float(float *buffer, int block) {
    return MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buffer, block, MPI_FLOAT, MPI_COMM_WORLD);
}

/// Rank r's `count` bytes land at full[r * count] on `root` (sharded optimizer state on a
/// checkpoint save, the trace's per-epoch events).
static inline int cmpi_gather_bytes(const void *block_data, void *full, int count, int root) {
    return MPI_Gather(block_data, count, MPI_BYTE, full, count, MPI_BYTE, root, MPI_COMM_WORLD);
}

/// full[r * block] on `root` lands in rank r's `block_data` (resuming sharded state).
static inline int cmpi_scatter_float(const float *full, float *block_data, int block, int root) {
    return MPI_Scatter(full, block, MPI_FLOAT, block_data, block, MPI_FLOAT, root, MPI_COMM_WORLD);
}

// Node-shared memory: the ranks of one node (MPI_COMM_TYPE_SHARED), ordered by world rank, and
// one window per node that the node's first rank allocates and the others map.
static inline int cmpi_split_node(MPI_Comm *node) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, node);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Comm_set_errhandler(*node, MPI_ERRORS_RETURN);
}

static inline int cmpi_comm_rank(MPI_Comm comm, int *rank) { return MPI_Comm_rank(comm, rank); }
static inline int cmpi_comm_size(MPI_Comm comm, int *size) { return MPI_Comm_size(comm, size); }
static inline int cmpi_comm_free(MPI_Comm *comm) { return MPI_Comm_free(comm); }
static inline int cmpi_comm_barrier(MPI_Comm comm) { return MPI_Barrier(comm); }
static inline int cmpi_comm_broadcast_bytes(MPI_Comm comm, void *buffer, int count, int root) {
    return MPI_Bcast(buffer, count, MPI_BYTE, root, comm);
}

/// Every rank of `node` calls this; only the one passing bytes > 0 allocates. `base` receives the
/// address of the allocating rank's segment, mapped into this process.
static inline int cmpi_shared_window(MPI_Comm node, long bytes, int owner, void **base, MPI_Win *window) {
    void *own = NULL;
    int rc = MPI_Win_allocate_shared((MPI_Aint)bytes, 1, MPI_INFO_NULL, node, &own, window);
    if (rc != MPI_SUCCESS) return rc;
    MPI_Aint size = 0;
    int unit = 0;
    return MPI_Win_shared_query(*window, owner, &size, &unit, base);
}

static inline int cmpi_window_free(MPI_Win *window) { return MPI_Win_free(window); }

static inline int cmpi_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

static inline void cmpi_error_string(int code, char *text, int capacity) {
    int length = 0;
    if (capacity < MPI_MAX_ERROR_STRING) { text[0] = 0; return; }
    MPI_Error_string(code, text, &length);
    text[length] = 0;
}

static inline int cmpi_max_error_string(void) { return MPI_MAX_ERROR_STRING + 1; }

#endif
