// Would bf16 GEMMs pay on this CPU? One thread: OpenBLAS sgemm (the kernels ddp runs) against
// oneDNN's matmul in f32 and in bf16 (bf16 operands, f32 accumulation and output, as torch's CPU
// autocast runs a Linear), at the default MLP's 8 training GEMMs (batch 128, nn.Linear layouts as
// ../shared/peers/sgemm_peak.py), and the f32 -> bf16 conversion of both operands a step would add.
// Prints microseconds per call (median of 15 trials of 50 calls) and the 8-GEMM limits.
//   apt-get install libdnnl-dev   (oneDNN 2.6, the library torch's CPU kernels use)
//   g++ -O2 -o /tmp/bf16_gemm benchmarks/bf16_gemm.cpp -ldnnl -lopenblas
//   OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Cooperlake /tmp/bf16_gemm
// ONEDNN_VERBOSE=1 shows the ISA oneDNN dispatched (the implementation is printed per shape).
#include <dnnl.hpp>
#include <cblas.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
using namespace dnnl;
using tag = memory::format_tag; using dt = memory::data_type;
struct Shape { const char* name; int M, N, K; bool ta, tb; };
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
template <class F> double timeit(F f) { for (int i = 0; i < 20; i++) f(); std::vector<double> t; for (int r = 0; r < 15; r++) { double a = now(); for (int i = 0; i < 50; i++) f(); t.push_back((now() - a) / 50); } std::sort(t.begin(), t.end()); return t[7]; }
int main() {
  Shape shapes[] = {{"L1 fwd", 128, 256, 784, false, true}, {"L1 dW", 256, 784, 128, true, false},
                    {"L2 fwd", 128, 256, 256, false, true}, {"L2 dW", 256, 256, 128, true, false}, {"L2 dX", 128, 256, 256, false, false},
                    {"L3 fwd", 128, 10, 256, false, true}, {"L3 dW", 10, 256, 128, true, false}, {"L3 dX", 128, 256, 10, false, false}};
  engine eng(engine::kind::cpu, 0); stream s(eng);
  double tb = 0, tf = 0, th = 0, tc = 0;
  printf("%-8s %8s %8s %8s %8s  (us)\n", "GEMM", "openblas", "dnnl f32", "dnnl bf16", "cvt A+B");
  for (auto& sh : shapes) {
    int M = sh.M, N = sh.N, K = sh.K;
    std::vector<float> A(M * K), B(K * N), C(M * N);
    for (auto& x : A) x = (rand() % 100) / 100.f; for (auto& x : B) x = (rand() % 100) / 100.f;
    double blas = timeit([&] { cblas_sgemm(CblasRowMajor, sh.ta ? CblasTrans : CblasNoTrans, sh.tb ? CblasTrans : CblasNoTrans, M, N, K, 1, A.data(), sh.ta ? M : K, B.data(), sh.tb ? K : N, 0, C.data(), N); });
    auto run = [&](dt in) {
      memory::desc a({M, K}, in, sh.ta ? tag::ba : tag::ab), b({K, N}, in, sh.tb ? tag::ba : tag::ab), c({M, N}, dt::f32, tag::ab);
      matmul::desc md(a, b, c); matmul::primitive_desc pd(md, eng);
      memory am(a, eng), bm(b, eng), cm(c, eng);
      matmul mm(pd);
      double t = timeit([&] { mm.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}}); s.wait(); });
      return std::make_pair(t, std::string(pd.impl_info_str()));
    };
    auto f32 = run(dt::f32); auto bf = run(dt::bf16);
    // converting both operands from f32 each call (a step's activations and updated weights)
    memory::desc af({M, K}, dt::f32, tag::ab), ab({M, K}, dt::bf16, tag::ab), bff({K, N}, dt::f32, tag::ab), bfb({K, N}, dt::bf16, tag::ab);
    memory am(af, eng, A.data()), abm(ab, eng), bm(bff, eng, B.data()), bbm(bfb, eng);
    reorder ra(am, abm), rb(bm, bbm);
    double cvt = timeit([&] { ra.execute(s, am, abm); rb.execute(s, bm, bbm); s.wait(); });
    printf("%-8s %8.1f %8.1f %8.1f %8.1f   f32:%s bf16:%s\n", sh.name, blas * 1e6, f32.first * 1e6, bf.first * 1e6, cvt * 1e6, f32.second.c_str(), bf.second.c_str());
    tb += blas; tf += f32.first; th += bf.first; tc += cvt;
  }
  printf("%-8s %8.1f %8.1f %8.1f %8.1f\n", "sum", tb * 1e6, tf * 1e6, th * 1e6, tc * 1e6);
  printf("8-GEMM limit, samples/s: openblas %.0f, dnnl f32 %.0f, dnnl bf16 %.0f, bf16 + conversions %.0f\n", 128 / tb, 128 / tf, 128 / th, 128 / (th + tc));
}
