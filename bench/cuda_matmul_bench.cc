// Benchmarks of the CUDA matmul family against ceilings measured in the same run, timed with
// CUDA events (manual time). In order:
//   CopyBandwidth     cudaMemcpyAsync device-to-device of 2 GiB: (read + write bytes) / time,
//                     the ceiling for memory-bound kernels ("copy GB/s").
//   CublasBf16Peak    cublasGemmEx 8192^3, BF16 inputs, FP32 compute: the matrix ceiling.
//   QuantGemv         our MatMul at decode shapes (M = 1, 4) for Q4_1/Q8_0/Q4_0, rotating over
//                     >= 1 GiB of weight copies so every call streams W from DRAM, 16 calls per
//                     timed iteration (the activation quantization included): weight GB/s and
//                     the fraction of the copy bandwidth (the goal is >= 0.6). MatMul's default
//                     path (GemvActivations::kAuto).
//   QuantGemv{TwoKernel,Fused}  the same with each way of quantizing the activations forced
//                     (Context::GemvActivations).
//   GemvKernel        the GEMV kernel alone on pre-quantized activations (its streaming rate).
//   Bf16MatMul        our MatMul with BF16 weights at training shapes: TFLOP/s, fraction of peak.
//   QuantPrefill      quantized weights at M = 512 (dequantize + cuBLAS): TFLOP/s.
//   F32Gemm           the training Gemm (cuBLAS FP32, no TF32) in its three uses: TFLOP/s.
// Rates are computed from the summed event times (not benchmark's CPU-time rates).
//   build/<dir>/bench/cuda_matmul_bench
// Without a usable device it prints why and exits 0.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/launch_matmul.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "tests/testing/kernel_data.h"

namespace anvil {
namespace {

cuda::Context* g_ctx = nullptr;
double g_copy_gbps = 0.0;    // read + write bytes per second / 1e9, from CopyBandwidth
double g_bf16_tflops = 0.0;  // from CublasBf16Peak

cudaStream_t Stream() { return static_cast<cudaStream_t>(g_ctx->stream()); }
ExecContext Cuda() { return ExecContext{Backend::kCuda, nullptr, g_ctx}; }

// Runs `enqueue(iteration)` once untimed, then once per benchmark iteration between two CUDA
// events; returns the summed event time in seconds (0 after an error, reported on `state`).
template <typename Enqueue>
double TimeLoop(benchmark::State& state, Enqueue&& enqueue) {
  cudaEvent_t start = nullptr, stop = nullptr;
  if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) {
    state.SkipWithError("cudaEventCreate failed");
    return 0.0;
  }
  double total = 0.0;
  absl::Status s = enqueue(0);
  if (s.ok()) s = g_ctx->Synchronize();
  int64_t i = 1;
  for (auto _ : state) {
    if (!s.ok()) break;
    cudaEventRecord(start, Stream());
    s = enqueue(i++);
    cudaEventRecord(stop, Stream());
    if (s.ok()) s = cuda::CudaStatus(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    if (s.ok())
      s = cuda::CudaStatus(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms * 1e-3);
    total += ms * 1e-3;
  }
  if (s.ok()) s = g_ctx->Synchronize();
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  if (!s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return 0.0;
  }
  return total;
}

// Device buffer or a skipped benchmark.
bool Alloc(benchmark::State& state, size_t bytes, cuda::DeviceBuffer* out) {
  auto b = cuda::DeviceBuffer::Allocate(bytes);
  if (!b.ok()) {
    state.SkipWithError(std::string(b.status().message()).c_str());
    return false;
  }
  *out = std::move(*b);
  return true;
}

void CopyBandwidth(benchmark::State& state) {
  const size_t bytes = size_t{2} << 30;
  cuda::DeviceBuffer src, dst;
  if (!Alloc(state, bytes, &src) || !Alloc(state, bytes, &dst)) return;
  cudaMemsetAsync(src.data(), 1, bytes, Stream());
  const double t = TimeLoop(state, [&](int64_t) {
    return cuda::CudaStatus(
        cudaMemcpyAsync(dst.data(), src.data(), bytes, cudaMemcpyDeviceToDevice, Stream()),
        "cudaMemcpyAsync");
  });
  if (t <= 0.0) return;
  g_copy_gbps = 2.0 * bytes * static_cast<double>(state.iterations()) / t * 1e-9;
  state.counters["copy_GB/s"] = g_copy_gbps;
}

void CublasBf16Peak(benchmark::State& state) {
  const int n = 8192;
  const size_t elems = size_t{n} * n;
  cuda::DeviceBuffer a, b, c;
  if (!Alloc(state, elems * 2, &a) || !Alloc(state, elems * 2, &b) ||
      !Alloc(state, elems * 4, &c)) {
    return;
  }
  // 0x3C3C as BF16 is about 0.0115: finite products, no denormals.
  cudaMemsetAsync(a.data(), 0x3C, elems * 2, Stream());
  cudaMemsetAsync(b.data(), 0x3C, elems * 2, Stream());
  const float alpha = 1.0f, beta = 0.0f;
  const double t = TimeLoop(state, [&](int64_t) {
    const cublasStatus_t s =
        cublasGemmEx(static_cast<cublasHandle_t>(g_ctx->cublas()), CUBLAS_OP_N, CUBLAS_OP_N, n, n,
                     n, &alpha, a.data(), CUDA_R_16BF, n, b.data(), CUDA_R_16BF, n, &beta, c.data(),
                     CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? absl::OkStatus()
                                      : absl::InternalError(cublasGetStatusString(s));
  });
  if (t <= 0.0) return;
  g_bf16_tflops = 2.0 * n * n * static_cast<double>(n) * state.iterations() / t * 1e-12;
  state.counters["TFLOP/s"] = g_bf16_tflops;
}

// A weight matrix [n][k] of `type` on the device, `copies` times back to back, filled with
// valid blocks (a 64-row random pattern repeated; timing does not depend on the values).
bool MakeDeviceWeights(benchmark::State& state, DType type, int64_t n, int64_t k, int64_t copies,
                       cuda::DeviceBuffer* out, size_t* matrix_bytes) {
  const int64_t pattern_rows = 64;
  const std::vector<uint8_t> pattern =
      testing::MakeWeights(type, testing::RandomFloats(pattern_rows * k, 11), pattern_rows, k);
  const size_t row_bytes = pattern.size() / pattern_rows;
  std::vector<uint8_t> host(row_bytes * n);
  for (int64_t r = 0; r < n; r += pattern_rows) {
    const int64_t rows = std::min(pattern_rows, n - r);
    std::memcpy(host.data() + r * row_bytes, pattern.data(), rows * row_bytes);
  }
  *matrix_bytes = host.size();
  if (!Alloc(state, host.size() * copies, out)) return false;
  for (int64_t c = 0; c < copies; ++c) {
    if (cudaMemcpy(out->as<uint8_t>() + c * host.size(), host.data(), host.size(),
                   cudaMemcpyHostToDevice) != cudaSuccess) {
      state.SkipWithError("weight upload failed");
      return false;
    }
  }
  return true;
}

// Random activations [rows][k] on the device.
bool MakeDeviceActs(benchmark::State& state, int64_t rows, int64_t k, cuda::DeviceBuffer* out) {
  const std::vector<float> x = testing::RandomFloats(rows * k, 12);
  auto b = cuda::DeviceBuffer::FromHost(x.data(), x.size() * 4);
  if (!b.ok()) {
    state.SkipWithError(std::string(b.status().message()).c_str());
    return false;
  }
  *out = std::move(*b);
  return true;
}

// MatMul at a memory-bound decode shape (also used for BF16 weights, where cuBLAS runs it).
using Acts = cuda::Context::GemvActivations;

void QuantGemv(benchmark::State& state, DType type, int64_t m, int64_t n, int64_t k,
               Acts acts = Acts::kAuto) {
  const int64_t bytes_one = k / BlockElems(type) * BlockBytes(type) * n;
  const int64_t copies = (int64_t{1} << 30) / bytes_one + 1;  // >= 1 GiB in rotation
  cuda::DeviceBuffer w, x, y;
  size_t matrix_bytes = 0;
  if (!MakeDeviceWeights(state, type, n, k, copies, &w, &matrix_bytes) ||
      !MakeDeviceActs(state, m, k, &x) || !Alloc(state, m * n * 4, &y)) {
    return;
  }
  // kCalls products per timed iteration, back to back as a decode step issues them: the GPU's
  // queue stays ahead of the host, so the time is the kernels' and not one launch's latency.
  constexpr int kCalls = 16;
  const Acts before = g_ctx->gemv_activations();
  g_ctx->set_gemv_activations(acts);
  const double t = TimeLoop(state, [&](int64_t i) {
    for (int c = 0; c < kCalls; ++c) {
      const uint8_t* wi = w.as<uint8_t>() + ((i * kCalls + c) % copies) * matrix_bytes;
      ANVIL_RETURN_IF_ERROR(MatMul(Cuda(), {type, wi, x.as<float>(), y.as<float>(), m, n, k}));
    }
    return absl::OkStatus();
  });
  g_ctx->set_gemv_activations(before);
  if (t <= 0.0) return;
  const double calls = static_cast<double>(state.iterations()) * kCalls;
  const double gbps = static_cast<double>(matrix_bytes) * calls / t * 1e-9;
  state.counters["weight_GB/s"] = gbps;
  state.counters["of_copy_bw"] = g_copy_gbps > 0.0 ? gbps / g_copy_gbps : 0.0;
  state.counters["us/call"] = t / calls * 1e6;
}

// The GEMV kernel alone (cuda::LaunchGemvQuant) on activations quantized once beforehand: the
// streaming rate of the kernel, without the per-call activation quantization and its launch.
void GemvKernel(benchmark::State& state, DType type, int64_t m, int64_t n, int64_t k) {
  const int64_t bytes_one = k / BlockElems(type) * BlockBytes(type) * n;
  const int64_t copies = (int64_t{1} << 30) / bytes_one + 1;
  cuda::DeviceBuffer w, x, xq, xd, xs, y;
  size_t matrix_bytes = 0;
  const int64_t nb = k / 32;
  if (!MakeDeviceWeights(state, type, n, k, copies, &w, &matrix_bytes) ||
      !MakeDeviceActs(state, m, k, &x) || !Alloc(state, m * k, &xq) ||
      !Alloc(state, m * nb * 4, &xd) || !Alloc(state, m * nb * 4, &xs) ||
      !Alloc(state, m * n * 4, &y)) {
    return;
  }
  if (cuda::LaunchQuantizeActivationsQ8(x.as<float>(), m, k, xq.as<int8_t>(), xd.as<float>(),
                                        xs.as<float>(), Stream()) != cudaSuccess) {
    state.SkipWithError("activation quantization failed");
    return;
  }
  const cuda::QuantType qt = type == DType::kQ8_0   ? cuda::QuantType::kQ8_0
                             : type == DType::kQ4_0 ? cuda::QuantType::kQ4_0
                                                    : cuda::QuantType::kQ4_1;
  constexpr int kCalls = 16;
  const double t = TimeLoop(state, [&](int64_t i) {
    for (int c = 0; c < kCalls; ++c) {
      const uint8_t* wi = w.as<uint8_t>() + ((i * kCalls + c) % copies) * matrix_bytes;
      ANVIL_RETURN_IF_ERROR(cuda::CudaStatus(
          cuda::LaunchGemvQuant(qt, wi, n, k, xq.as<int8_t>(), xd.as<float>(), xs.as<float>(), m,
                                y.as<float>(), g_ctx->sm_count(), Stream()),
          "LaunchGemvQuant"));
    }
    return absl::OkStatus();
  });
  if (t <= 0.0) return;
  const double calls = static_cast<double>(state.iterations()) * kCalls;
  const double gbps = static_cast<double>(matrix_bytes) * calls / t * 1e-9;
  state.counters["weight_GB/s"] = gbps;
  state.counters["of_copy_bw"] = g_copy_gbps > 0.0 ? gbps / g_copy_gbps : 0.0;
  state.counters["us/call"] = t / calls * 1e6;
}

// MatMul with weights of `type` at a compute-bound shape: TFLOP/s and fraction of the BF16 peak.
void DenseMatMul(benchmark::State& state, DType type, int64_t m, int64_t n, int64_t k) {
  cuda::DeviceBuffer w, x, y;
  size_t matrix_bytes = 0;
  if (!MakeDeviceWeights(state, type, n, k, 1, &w, &matrix_bytes) ||
      !MakeDeviceActs(state, m, k, &x) || !Alloc(state, m * n * 4, &y)) {
    return;
  }
  const double t = TimeLoop(state, [&](int64_t) {
    return MatMul(Cuda(), {type, w.data(), x.as<float>(), y.as<float>(), m, n, k});
  });
  if (t <= 0.0) return;
  const double tflops = 2.0 * m * n * static_cast<double>(k) * state.iterations() / t * 1e-12;
  state.counters["TFLOP/s"] = tflops;
  state.counters["of_bf16_peak"] = g_bf16_tflops > 0.0 ? tflops / g_bf16_tflops : 0.0;
}

// The training Gemm: forward y = x W^T (trans_b), input gradient dx = dy W, weight gradient
// dW = dy^T x (trans_a); all M = N = K = 4096.
void F32Gemm(benchmark::State& state, bool trans_a, bool trans_b) {
  const int64_t d = 4096;
  cuda::DeviceBuffer a, b, c;
  if (!MakeDeviceActs(state, d, d, &a) || !MakeDeviceActs(state, d, d, &b) ||
      !Alloc(state, d * d * 4, &c)) {
    return;
  }
  const double t = TimeLoop(state, [&](int64_t) {
    return Gemm(Cuda(), {trans_a, trans_b, d, d, d, 1.0f, a.as<float>(), d, b.as<float>(), d, 0.0f,
                         c.as<float>(), d});
  });
  if (t <= 0.0) return;
  const double tflops = 2.0 * d * d * static_cast<double>(d) * state.iterations() / t * 1e-12;
  state.counters["TFLOP/s"] = tflops;
  state.counters["of_bf16_peak"] = g_bf16_tflops > 0.0 ? tflops / g_bf16_tflops : 0.0;
}

void Register() {
  const auto timed = [](benchmark::internal::Benchmark* b) {
    b->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(0.2);
  };
  timed(benchmark::RegisterBenchmark("CopyBandwidth/2GiB", CopyBandwidth));
  timed(benchmark::RegisterBenchmark("CublasBf16Peak/8192", CublasBf16Peak));
  for (DType t : {DType::kQ4_1, DType::kQ8_0, DType::kQ4_0}) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 49152 * 8, 576},
                           {4, 49152 * 8, 576},
                           {1, 14336, 4096},
                           {1, 4096, 14336}}) {
      timed(benchmark::RegisterBenchmark(
          absl::StrCat("QuantGemv/", DTypeName(t), "/M", m, "_N", n, "_K", k).c_str(),
          [t, m = m, n = n, k = k](benchmark::State& s) { QuantGemv(s, t, m, n, k); }));
    }
  }
  for (DType t : {DType::kQ4_1, DType::kQ8_0, DType::kQ4_0}) {
    for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 49152 * 8, 576},
                           {1, 14336, 4096},
                           {1, 4096, 14336}}) {
      for (auto [name, acts] : {std::pair<const char*, Acts>{"TwoKernel", Acts::kTwoKernels},
                                {"Fused", Acts::kFused}}) {
        timed(benchmark::RegisterBenchmark(
            absl::StrCat("QuantGemv", name, "/", DTypeName(t), "/M", m, "_N", n, "_K", k).c_str(),
            [t, m = m, n = n, k = k, acts = acts](benchmark::State& s) {
              QuantGemv(s, t, m, n, k, acts);
            }));
      }
      timed(benchmark::RegisterBenchmark(
          absl::StrCat("GemvKernel/", DTypeName(t), "/M", m, "_N", n, "_K", k).c_str(),
          [t, m = m, n = n, k = k](benchmark::State& s) { GemvKernel(s, t, m, n, k); }));
    }
  }
  // cuBLAS's own decode-shape GEMV on BF16 weights, for comparison with ours.
  timed(benchmark::RegisterBenchmark("Bf16Gemv/M1_N393216_K576", [](benchmark::State& s) {
    QuantGemv(s, DType::kBF16, 1, 49152 * 8, 576);
  }));
  for (int64_t m : {4096, 8192}) {
    timed(benchmark::RegisterBenchmark(
        absl::StrCat("Bf16MatMul/M", m, "_N4096_K4096").c_str(),
        [m](benchmark::State& s) { DenseMatMul(s, DType::kBF16, m, 4096, 4096); }));
  }
  for (DType t : {DType::kQ4_1, DType::kQ8_0}) {
    timed(benchmark::RegisterBenchmark(
        absl::StrCat("QuantPrefill/", DTypeName(t), "/M512_N4096_K4096").c_str(),
        [t](benchmark::State& s) { DenseMatMul(s, t, 512, 4096, 4096); }));
  }
  timed(benchmark::RegisterBenchmark("F32Gemm/forward_NT/4096",
                                     [](benchmark::State& s) { F32Gemm(s, false, true); }));
  timed(benchmark::RegisterBenchmark("F32Gemm/input_grad_NN/4096",
                                     [](benchmark::State& s) { F32Gemm(s, false, false); }));
  timed(benchmark::RegisterBenchmark("F32Gemm/weight_grad_TN/4096",
                                     [](benchmark::State& s) { F32Gemm(s, true, false); }));
}

}  // namespace
}  // namespace anvil

int main(int argc, char** argv) {
  if (absl::Status s = anvil::cuda::DeviceStatus(); !s.ok()) {
    std::printf("cuda_matmul_bench: skipped: %s\n", std::string(s.message()).c_str());
    return 0;
  }
  auto ctx = anvil::cuda::Context::Create();
  if (!ctx.ok()) {
    std::fprintf(stderr, "cuda_matmul_bench: %s\n", std::string(ctx.status().message()).c_str());
    return 1;
  }
  anvil::g_ctx = ctx->get();
  std::printf("device: %s (%d SMs)\n", anvil::g_ctx->device_name().c_str(),
              anvil::g_ctx->sm_count());
  benchmark::Initialize(&argc, argv);
  anvil::Register();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
