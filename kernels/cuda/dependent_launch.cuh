// Kernel launches with programmatic dependent launch (sm_90): the kernel's CTAs may start while
// the kernel before it on the stream finishes, once that one lets its dependents go
// (griddepcontrol.launch_dependents), and must wait (griddepcontrol.wait) before reading
// anything the earlier kernel wrote. The quantized GEMV and the activation quantizer use it.
#ifndef ANVIL_KERNELS_CUDA_DEPENDENT_LAUNCH_CUH_
#define ANVIL_KERNELS_CUDA_DEPENDENT_LAUNCH_CUH_

#include <cuda_runtime.h>

namespace anvil::cuda {

template <typename... Params, typename... Args>
cudaError_t LaunchDependent(void (*kernel)(Params...), unsigned ctas, unsigned threads,
                            size_t dynamic_smem, cudaStream_t stream, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(ctas);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = dynamic_smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, args...);
}

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_DEPENDENT_LAUNCH_CUH_
