// Where an op runs. One ExecContext is passed to every dispatching op (kernels/ops.h); it names
// the backend and carries the persistent CPU thread pool.
#ifndef ANVIL_KERNELS_BACKEND_H_
#define ANVIL_KERNELS_BACKEND_H_

namespace anvil {

class ThreadPool;

enum class Backend {
  kReference,  // plain loops: the truth every other backend is tested against
  kCpu,        // AVX2/FMA/F16C, multithreaded
  kCuda,       // only when built with ANVIL_CUDA and a device exists
};
const char* BackendName(Backend b);

struct ExecContext {
  Backend backend = Backend::kCpu;
  ThreadPool* pool = nullptr;  // may be null: single-threaded
};

}  // namespace anvil

#endif  // ANVIL_KERNELS_BACKEND_H_
