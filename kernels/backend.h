// Where an op runs. One ExecContext is passed to every dispatching op (kernels/dispatch.cc); it
// names the backend and carries what that backend needs: the persistent CPU thread pool, or the
// CUDA stream and library handles.
//
// Memory: with Backend::kCuda every tensor pointer in an op's argument struct is a device
// pointer (cudaMalloc'd, see kernels/cuda/context.h) and the op is enqueued on the context's
// stream (it may return before the GPU has finished; Context::Synchronize waits). With the host
// backends every pointer is host memory and the op has finished when it returns.
#ifndef ANVIL_KERNELS_BACKEND_H_
#define ANVIL_KERNELS_BACKEND_H_

namespace anvil {

class ThreadPool;
namespace cuda {
class Context;
}  // namespace cuda

enum class Backend {
  kReference,  // plain loops: the truth every other backend is tested against
  kCpu,        // AVX2/FMA/F16C, multithreaded
  kCuda,       // only when built with ANVIL_CUDA and a device exists
};
const char* BackendName(Backend b);

// How MatMul sums on the reference and CPU backends (kernels/matmul.h has the arithmetic).
enum class MatMulNumerics {
  // llama.cpp's CPU kernels, bit for bit: quantized blocks in 8 float lanes of 4-product sums;
  // F32 in tinyBLAS's order when M >= 2. The default: `anvil generate` equals llama.cpp.
  kLlamaCpp,
  // One fused chain per output over each block's exact integer sum; F32 in vec_dot's order for
  // every M. The same bits whatever M a row is multiplied in (batch-invariant), about half the
  // vector work for M >= 2; differs from llama.cpp in the last bits (anvil-server --matmul fast).
  kBlockSum,
};
const char* MatMulNumericsName(MatMulNumerics n);

struct ExecContext {
  Backend backend = Backend::kCpu;
  ThreadPool* pool = nullptr;     // kCpu: may be null (single-threaded)
  cuda::Context* cuda = nullptr;  // kCuda: required
  MatMulNumerics matmul = MatMulNumerics::kLlamaCpp;  // host backends only
};

}  // namespace anvil

#endif  // ANVIL_KERNELS_BACKEND_H_
