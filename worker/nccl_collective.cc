#include "worker/nccl_collective.h"

#include <cuda_runtime.h>
#include <gloo/rendezvous/store.h>
#include <nccl.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace anvil::worker {
namespace {

constexpr size_t kChunkBytes = size_t{64} << 20;
constexpr char kIdKey[] = "nccl/unique_id";

absl::Status CudaError(cudaError_t e, const char* what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

absl::Status NcclError(ncclResult_t r, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
}

}  // namespace

std::vector<GpuInfo> ListGpus() {
  std::vector<GpuInfo> out;
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return out;
  for (int d = 0; d < n; ++d) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, d) != cudaSuccess) continue;
    out.push_back({p.name, static_cast<int64_t>(p.totalGlobalMem)});
  }
  return out;
}

struct NcclCollective::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* buffer = nullptr;
  ~State() {
    if (comm != nullptr) ncclCommAbort(comm);  // frees it; never blocks on peers
    if (buffer != nullptr) cudaFree(buffer);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

NcclCollective::NcclCollective(const NcclOptions& options, std::unique_ptr<State> state)
    : options_(options), state_(std::move(state)) {}

NcclCollective::~NcclCollective() = default;

absl::StatusOr<std::unique_ptr<NcclCollective>> NcclCollective::Connect(
    const NcclOptions& o, gloo::rendezvous::Store& store) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl: rank ", o.rank, " is not in a world of ", o.world_size));
  }
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices); e != cudaSuccess) {
    return CudaError(e, "nccl: no usable CUDA device");
  }
  if (o.device < 0 || o.device >= devices) {
    return absl::InvalidArgumentError(
        absl::StrCat("nccl: device ", o.device, " does not exist (", devices, " devices)"));
  }
  if (cudaError_t e = cudaSetDevice(o.device); e != cudaSuccess) return CudaError(e, "cudaSetDevice");

  ncclUniqueId id;
  try {
    if (o.rank == 0) {
      if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) return NcclError(r, "ncclGetUniqueId");
      store.set(kIdKey, std::vector<char>(reinterpret_cast<char*>(&id),
                                          reinterpret_cast<char*>(&id) + sizeof(id)));
    } else {
      store.wait({kIdKey}, o.timeout);
      const std::vector<char> v = store.get(kIdKey);
      if (v.size() != sizeof(id)) {
        return absl::InternalError(absl::StrCat("nccl: unique id of ", v.size(), " bytes"));
      }
      std::memcpy(&id, v.data(), sizeof(id));
    }
  } catch (const std::exception& e) {
    return absl::DeadlineExceededError(absl::StrCat("nccl: rank ", o.rank, ": unique id: ", e.what()));
  }

  auto state = std::make_unique<State>();
  if (cudaError_t e = cudaStreamCreateWithFlags(&state->stream, cudaStreamNonBlocking);
      e != cudaSuccess) {
    return CudaError(e, "cudaStreamCreate");
  }
  if (cudaError_t e = cudaMalloc(&state->buffer, kChunkBytes); e != cudaSuccess) {
    return CudaError(e, "cudaMalloc");
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&state->comm, o.world_size, id, o.rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) return NcclError(r, "ncclCommInitRankConfig");
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  for (;;) {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(state->comm, &async);
    if (async == ncclSuccess) break;
    if (async != ncclInProgress) return NcclError(async, "nccl communicator");
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "nccl: rank ", o.rank, " of ", o.world_size, ": the other ranks did not join within ",
          o.timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::unique_ptr<NcclCollective>(new NcclCollective(o, std::move(state)));
}

absl::Status NcclCollective::Sum(void* data, size_t n, size_t elem_bytes, bool is_double) {
  if (!broken_.ok()) return broken_;
  auto fail = [&](absl::Status s) {
    broken_ = s;
    return s;
  };
  if (cudaError_t e = cudaSetDevice(options_.device); e != cudaSuccess) {
    return fail(CudaError(e, "cudaSetDevice"));
  }
  const size_t per_chunk = kChunkBytes / elem_bytes;
  auto* bytes = static_cast<char*>(data);
  for (size_t off = 0; off < n; off += per_chunk) {
    const size_t count = std::min(per_chunk, n - off);
    char* host = bytes + off * elem_bytes;
    cudaMemcpyAsync(state_->buffer, host, count * elem_bytes, cudaMemcpyHostToDevice, state_->stream);
    ncclResult_t r = ncclAllReduce(state_->buffer, state_->buffer, count,
                                   is_double ? ncclFloat64 : ncclFloat32, ncclSum, state_->comm,
                                   state_->stream);
    if (r != ncclSuccess && r != ncclInProgress) return fail(NcclError(r, "ncclAllReduce"));
    cudaMemcpyAsync(host, state_->buffer, count * elem_bytes, cudaMemcpyDeviceToHost, state_->stream);
    // Bounded wait: a peer that died leaves the kernel waiting forever; abort then.
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    for (;;) {
      const cudaError_t q = cudaStreamQuery(state_->stream);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) return fail(CudaError(q, "nccl allreduce"));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(state_->comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        return fail(NcclError(async, "nccl allreduce"));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return fail(absl::DeadlineExceededError(absl::StrCat(
            "nccl: rank ", options_.rank, ": allreduce of ", count, " values did not complete within ",
            options_.timeout.count(), " ms")));
      }
      std::this_thread::yield();
    }
  }
  return absl::OkStatus();
}

absl::Status NcclCollective::AllreduceSum(float* data, size_t n) {
  return Sum(data, n, sizeof(float), false);
}

absl::Status NcclCollective::AllreduceSum(double* data, size_t n) {
  return Sum(data, n, sizeof(double), true);
}

}  // namespace anvil::worker
