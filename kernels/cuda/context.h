// The CUDA backend's handle: one device, one stream, a cuBLAS handle and a grow-only device
// workspace. Ops given an ExecContext with backend kCuda enqueue on this stream; Synchronize()
// waits for them and reports any asynchronous kernel error. DeviceBuffer owns device memory.
// This header has no CUDA includes, so host code and tests include it freely; it exists only in
// builds with ANVIL_CUDA.
#ifndef ANVIL_KERNELS_CUDA_CONTEXT_H_
#define ANVIL_KERNELS_CUDA_CONTEXT_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace anvil::cuda {

// OK when a CUDA device can be used; otherwise Unavailable naming why (no driver, no device).
// Tests skip with this message.
absl::Status DeviceStatus();

// Maps a cudaError_t (passed as int so callers need no CUDA headers) to a Status naming `what`.
absl::Status CudaStatus(int cuda_error, const char* what);

class Context {
 public:
  static absl::StatusOr<std::unique_ptr<Context>> Create(int device = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  void* stream() const { return stream_; }    // cudaStream_t
  void* cublas() const { return cublas_; }    // cublasHandle_t (pointer mode host, on stream())
  int device() const { return device_; }
  int sm_count() const { return sm_count_; }
  const std::string& device_name() const { return name_; }
  int smem_per_sm() const { return smem_per_sm_; }                    // bytes
  int smem_per_block_optin() const { return smem_per_block_optin_; }  // bytes

  // How MatMul's quantized GEMV gets its 8-bit activations (same bits every way):
  //   kAuto         kFused for K <= 4096, where it measured faster (kernels/cuda/matmul.cc),
  //                 else two kernels;
  //   kTwoKernels   a quantization kernel, then the GEMV;
  //   kFused        each CTA of the GEMV quantizes x itself, wherever x fits its shared memory.
  // kAuto unless the environment sets ANVIL_CUDA_GEMV=two-kernels or fused; benchmarks and
  // tests switch it to compare the paths.
  enum class GemvActivations { kAuto, kTwoKernels, kFused };
  GemvActivations gemv_activations() const { return gemv_activations_; }
  void set_gemv_activations(GemvActivations v) { gemv_activations_ = v; }

  // A device scratch area of at least `bytes`, valid until the next call that grows it; ops
  // use it for temporaries (quantized activations, error flags). Not for concurrent ops.
  absl::StatusOr<void*> Workspace(size_t bytes);

  // Waits for all work on the stream; returns the first asynchronous error, if any.
  absl::Status Synchronize();

 private:
  Context() = default;
  int device_ = 0;
  int sm_count_ = 0;
  int smem_per_sm_ = 0;
  int smem_per_block_optin_ = 0;
  GemvActivations gemv_activations_ = GemvActivations::kAuto;
  std::string name_;
  void* stream_ = nullptr;
  void* cublas_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

// Device memory, freed on destruction. Copies are synchronous with respect to the whole device:
// a copy to the device has landed when it returns, and a copy to the host first waits for every
// op in flight on any stream.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static absl::StatusOr<DeviceBuffer> Allocate(size_t bytes);
  // Allocates and copies `bytes` from host memory.
  static absl::StatusOr<DeviceBuffer> FromHost(const void* src, size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return bytes_; }

  absl::Status CopyFromHost(const void* src, size_t bytes);
  absl::Status CopyToHost(void* dst, size_t bytes) const;

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_CONTEXT_H_
