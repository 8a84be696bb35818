// Overlap probe: does MPI_Ireduce_scatter_block progress while this rank runs a GEMM?
// The GEMM is the first dense layer's dW (256×784×64: np=2's half of the default batch), the
// backward work left once the later layers' gradients (68,096 floats, padded) are ready.
// Build and run (2 ranks, one per core):
//   mpicc -O2 -o /tmp/overlap benchmarks/overlap_probe.c $(pkg-config --cflags --libs openblas)
//   OPENBLAS_NUM_THREADS=1 mpirun -np 2 --bind-to core /tmp/overlap
// Prints the GEMM alone, the reduce-scatter alone, both in sequence, and the reduce-scatter
// started before the GEMM and waited for after it. See ShardedSync's doc comment for results.
#include <mpi.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size; MPI_Comm_rank(MPI_COMM_WORLD, &rank); MPI_Comm_size(MPI_COMM_WORLD, &size);
  int bucket = 68096;                       /* layers 4..8 of the default model, padded */
  int block = bucket / size;
  float *grad = calloc(bucket, 4), *shard = calloc(block, 4);
  int M = 256, N = 784, K = 64;
  float *a = calloc(M * K, 4), *b = calloc(K * N, 4), *c = calloc(M * N, 4);
  for (int i = 0; i < M*K; i++) a[i] = 0.001f * (i % 97); for (int i = 0; i < K*N; i++) b[i] = 0.002f * (i % 89);
  double t_gemm = 0, t_rs = 0, t_seq = 0, t_ovl = 0; int reps = 400;
  for (int mode = 0; mode < 4; mode++) for (int r = 0; r < reps; r++) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (mode == 0) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1, a, M, b, N, 1, c, N);
    if (mode == 1) MPI_Reduce_scatter_block(grad, shard, block, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    if (mode == 2) { cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1, a, M, b, N, 1, c, N);
                     MPI_Reduce_scatter_block(grad, shard, block, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }
    if (mode == 3) { MPI_Request q; MPI_Ireduce_scatter_block(grad, shard, block, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &q);
                     cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1, a, M, b, N, 1, c, N);
                     MPI_Wait(&q, MPI_STATUS_IGNORE); }
    double dt = MPI_Wtime() - t0;
    if (mode == 0) t_gemm += dt; if (mode == 1) t_rs += dt; if (mode == 2) t_seq += dt; if (mode == 3) t_ovl += dt;
  }
  if (rank == 0) printf("np=%d  dW GEMM %.1f us  reduce-scatter(%d floats) %.1f us  sequential %.1f us  overlapped %.1f us  saved %.1f us\n",
      size, 1e6*t_gemm/reps, bucket, 1e6*t_rs/reps, 1e6*t_seq/reps, 1e6*t_ovl/reps, 1e6*(t_seq-t_ovl)/reps);
  MPI_Finalize(); return 0;
}
