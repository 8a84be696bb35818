// Would oneDNN's convolution primitives beat ddp's im2col + OpenBLAS at the peer CNN's shapes?
// One thread, batch 128, 3×3 same, stride 1: conv1 (28×28×1 → 32) and conv2 (14×14×32 → 64) of
// ../shared/peers/fmnist_torch.py --model cnn. For each: forward (training), backward data (dX)
// and backward weights (dW), with the layouts oneDNN prefers (format_tag::any: its blocked
// nChw16c, reorders not counted, the best case for it) and with ddp's channels-last (nhwc, ohwi
// kernels). Prints milliseconds per call (median of 15 trials of 20 calls) and the implementation
// oneDNN dispatched; compare with ddp's layer timings from
// `DDP_BENCH=1 swift test -c release --filter Conv2DTests/testBenchmarkAgainstBareGEMMs`.
//   apt-get install libdnnl-dev   (oneDNN 2.6, the library torch's CPU convolutions use)
//   g++ -O2 -o /tmp/dnnl_conv benchmarks/dnnl_conv.cpp -ldnnl
//   OMP_NUM_THREADS=1 /tmp/dnnl_conv
#include <dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// A reference implementation (ref:any, hundreds of ms a call) is timed over 3 single calls.
template <class F> static double milliseconds(F f) {
  double first = now();
  f();
  bool slow = now() - first > 0.05;
  for (int i = 0; i < (slow ? 0 : 5); i++) f();
  std::vector<double> t;
  for (int r = 0; r < (slow ? 3 : 15); r++) {
    double a = now();
    for (int i = 0; i < (slow ? 1 : 20); i++) f();
    t.push_back((now() - a) / (slow ? 1 : 20));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2] * 1e3;
}

static memory filled(const memory::desc& d, const engine& eng) {
  memory m(d, eng);
  float* p = static_cast<float*>(m.get_data_handle());
  for (size_t i = 0; i < d.get_size() / sizeof(float); i++) p[i] = (rand() % 200 - 100) / 100.f;
  return m;
}

struct Conv { const char* name; int batch, height, width, channels, filters; };

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const Conv convs[] = {{"conv1", 128, 28, 28, 1, 32}, {"conv2", 128, 14, 14, 32, 64}};
  printf("%-6s %-8s %9s %9s %9s  implementations\n", "layer", "layout", "fwd ms", "dX ms", "dW ms");
  for (const Conv& c : convs) {
    for (bool channelsLast : {false, true}) {
      memory::dims src = {c.batch, c.channels, c.height, c.width}, weights = {c.filters, c.channels, 3, 3},
                   dst = {c.batch, c.filters, c.height, c.width}, strides = {1, 1}, padding = {1, 1};
      memory::desc srcMD(src, dt::f32, channelsLast ? tag::nhwc : tag::any),
          weightsMD(weights, dt::f32, channelsLast ? tag::ohwi : tag::any),
          dstMD(dst, dt::f32, channelsLast ? tag::nhwc : tag::any);
      convolution_forward::primitive_desc forward(
          convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, srcMD, weightsMD, dstMD,
                                    strides, padding, padding), eng);
      convolution_backward_data::primitive_desc backwardData(
          convolution_backward_data::desc(algorithm::convolution_direct, srcMD, weightsMD, dstMD, strides, padding, padding),
          eng, forward);
      convolution_backward_weights::primitive_desc backwardWeights(
          convolution_backward_weights::desc(algorithm::convolution_direct, srcMD, weightsMD, dstMD, strides, padding, padding),
          eng, forward);
      memory x = filled(forward.src_desc(), eng), w = filled(forward.weights_desc(), eng), y = filled(forward.dst_desc(), eng);
      memory dy = filled(backwardData.diff_dst_desc(), eng), dx = filled(backwardData.diff_src_desc(), eng);
      memory dyW = filled(backwardWeights.diff_dst_desc(), eng), xW = filled(backwardWeights.src_desc(), eng),
             dw = filled(backwardWeights.diff_weights_desc(), eng);
      convolution_forward f(forward);
      convolution_backward_data bd(backwardData);
      convolution_backward_weights bw(backwardWeights);
      double tf = milliseconds([&] { f.execute(s, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y}}); s.wait(); });
      double td = milliseconds([&] { bd.execute(s, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, dx}}); s.wait(); });
      double tw = milliseconds([&] { bw.execute(s, {{DNNL_ARG_SRC, xW}, {DNNL_ARG_DIFF_DST, dyW}, {DNNL_ARG_DIFF_WEIGHTS, dw}}); s.wait(); });
      printf("%-6s %-8s %9.3f %9.3f %9.3f  %s / %s / %s\n", c.name, channelsLast ? "nhwc" : "blocked", tf, td, tw,
             forward.impl_info_str(), backwardData.impl_info_str(), backwardWeights.impl_info_str());
    }
  }
  return 0;
}
