// Context and DeviceBuffer over the CUDA runtime and cuBLAS (host code, compiled by the C++
// compiler and linked against cudart and cublas).
#include "kernels/cuda/context.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"

namespace anvil::cuda {

absl::Status CudaStatus(int cuda_error, const char* what) {
  if (cuda_error == cudaSuccess) return absl::OkStatus();
  const auto e = static_cast<cudaError_t>(cuda_error);
  const std::string msg =
      absl::StrCat(what, ": CUDA error ", cuda_error, " (", cudaGetErrorName(e), ": ",
                   cudaGetErrorString(e), ")");
  switch (e) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    case cudaErrorInvalidValue:
      return absl::InvalidArgumentError(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status DeviceStatus() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return absl::UnavailableError(absl::StrCat("no usable CUDA device: ", cudaGetErrorName(e),
                                               " (", cudaGetErrorString(e), ")"));
  }
  if (count == 0) return absl::UnavailableError("no usable CUDA device: device count is 0");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Context>> Context::Create(int device) {
  ANVIL_RETURN_IF_ERROR(DeviceStatus());
  std::unique_ptr<Context> ctx(new Context());
  ctx->device_ = device;
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaSetDevice(device), "cudaSetDevice"));
  cudaDeviceProp prop{};
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaGetDeviceProperties(&prop, device),
                                   "cudaGetDeviceProperties"));
  ctx->sm_count_ = prop.multiProcessorCount;
  ctx->smem_per_sm_ = static_cast<int>(prop.sharedMemPerMultiprocessor);
  ctx->smem_per_block_optin_ = static_cast<int>(prop.sharedMemPerBlockOptin);
  if (const char* mode = std::getenv("ANVIL_CUDA_GEMV"); mode != nullptr) {
    const std::string_view m(mode);
    if (m == "two-kernels") ctx->gemv_activations_ = GemvActivations::kTwoKernels;
    if (m == "fused") ctx->gemv_activations_ = GemvActivations::kFused;
  }
  ctx->name_ = prop.name;
  cudaStream_t stream = nullptr;
  ANVIL_RETURN_IF_ERROR(
      CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate"));
  ctx->stream_ = stream;
  cublasHandle_t handle = nullptr;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError("cublasCreate failed");
  }
  ctx->cublas_ = handle;
  if (cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError("cublasSetStream failed");
  }
  return ctx;
}

Context::~Context() {
  if (cublas_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(cublas_));
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

absl::StatusOr<void*> Context::Workspace(size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_;
  ANVIL_RETURN_IF_ERROR(Synchronize());  // earlier ops may still read the old one
  if (workspace_ != nullptr) cudaFree(workspace_);
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  const size_t grow = bytes + bytes / 2;
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&workspace_, grow), "workspace cudaMalloc"));
  workspace_bytes_ = grow;
  return workspace_;
}

absl::Status Context::Synchronize() {
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)),
                                   "cudaStreamSynchronize"));
  return CudaStatus(cudaGetLastError(), "kernel launch");
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  if (bytes == 0) return b;
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaMalloc(&b.ptr_, bytes),
                                   absl::StrCat("cudaMalloc(", bytes, " bytes)").c_str()));
  b.bytes_ = bytes;
  return b;
}

absl::StatusOr<DeviceBuffer> DeviceBuffer::FromHost(const void* src, size_t bytes) {
  ANVIL_ASSIGN_OR_RETURN(DeviceBuffer b, Allocate(bytes));
  ANVIL_RETURN_IF_ERROR(b.CopyFromHost(src, bytes));
  return b;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

absl::Status DeviceBuffer::CopyFromHost(const void* src, size_t bytes) {
  if (bytes > bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("copy of ", bytes, " bytes into a ", bytes_, "-byte device buffer"));
  }
  if (bytes == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpy(ptr_, src, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to device"));
  // From pageable memory cudaMemcpy may return before the DMA lands, and kernels on the
  // contexts' non-blocking streams are not ordered after it: wait for the device.
  return CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize after copy to device");
}

absl::Status DeviceBuffer::CopyToHost(void* dst, size_t bytes) const {
  if (bytes > bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("copy of ", bytes, " bytes out of a ", bytes_, "-byte device buffer"));
  }
  if (bytes == 0) return absl::OkStatus();
  // Ops on non-blocking streams are not ordered before a legacy-stream copy: finish them first.
  ANVIL_RETURN_IF_ERROR(
      CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize before copy to host"));
  return CudaStatus(cudaMemcpy(dst, ptr_, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy to host");
}

}  // namespace anvil::cuda
