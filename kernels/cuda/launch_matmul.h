// Plain launchers for the CUDA matmul family's own kernels (convert.cu, matmul_quant.cu,
// gemm.cu). No abseil here: nvcc compiles the .cu side as C++17. Every pointer is a device
// pointer; each launcher enqueues on `stream`, returns the launch error (cudaGetLastError) and
// never waits. Shape checks are the caller's job (kernels/cuda/matmul.cc, gemm.cc); the
// launchers only return cudaErrorInvalidValue for sizes their grids cannot express.
#ifndef ANVIL_KERNELS_CUDA_LAUNCH_MATMUL_H_
#define ANVIL_KERNELS_CUDA_LAUNCH_MATMUL_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace anvil::cuda {

// The 32-element block weight types (layouts in kernels/dtype.h, repeated here because that
// header pulls in abseil).
enum class QuantType : int { kQ8_0 = 0, kQ4_0 = 1, kQ4_1 = 2 };
// Bytes of one 32-element block: 34, 18, 20.
int QuantBlockBytes(QuantType t);

// 16-bit float formats cuBLAS consumes.
enum class HalfType : int { kF16 = 0, kBF16 = 1 };

// ---- convert.cu -------------------------------------------------------------------------

// x [count] float -> out [count] F16 or BF16 (round to nearest even, as FloatToHalf/ToBf16).
cudaError_t LaunchConvertToHalf(const float* x, int64_t count, HalfType type, void* out,
                                cudaStream_t stream);

// Activations for the quantized GEMV, quantized per 32-block exactly as the reference's
// QuantizeActivationQ8_0/Q8_1 (d = amax/127, q = rint(x * 127/amax), s = d * sum(q), d and s
// rounded through fp16): x [m][k] float (k % 32 == 0) -> q [m][k] int8 (16-byte aligned),
// d [m][k/32] and s [m][k/32] float (the fp16-rounded values, widened).
cudaError_t LaunchQuantizeActivationsQ8(const float* x, int64_t m, int64_t k, int8_t* q, float* d,
                                        float* s, cudaStream_t stream);

// The same quantization, written back as F16 values q * d (the large-M path feeds cuBLAS the
// activations the reference's integer dot products see): x [m][k] -> out [m][k] F16.
cudaError_t LaunchQuantizeRoundTripF16(const float* x, int64_t m, int64_t k, void* out,
                                       cudaStream_t stream);

// Weight rows [rows][k] of `type` (rows of k/32 blocks, 2-byte aligned) -> out [rows][k] F16
// (16-byte aligned), each element rounded once from its float value.
cudaError_t LaunchDequantizeToF16(QuantType type, const void* w, int64_t rows, int64_t k, void* out,
                                  cudaStream_t stream);

// ---- matmul_quant.cu --------------------------------------------------------------------

// y[i][r] = dot(x[i], W[r]) for quantized W [n][k] (2-byte aligned, any offset) and activations
// from LaunchQuantizeActivationsQ8 (xq [m][k], xd/xs [m][k/32]); y [m][n] float. Any m >= 1
// (passes of up to kGemvMaxRowsPerPass activation rows, each streaming W once); meant for
// small m. sm_count sizes the grid for small matrices.
inline constexpr int kGemvMaxRowsPerPass = 8;
cudaError_t LaunchGemvQuant(QuantType type, const void* w, int64_t n, int64_t k, const int8_t* xq,
                            const float* xd, const float* xs, int64_t m, float* y, int sm_count,
                            cudaStream_t stream);

// The same product in one kernel from unquantized activations x [m][k] float (16-byte aligned):
// each CTA quantizes x itself (bit-identical to LaunchQuantizeActivationsQ8) into shared
// memory, so y is bit-identical to LaunchQuantizeActivationsQ8 + LaunchGemvQuant. Only for
// shapes GemvQuantFusedFits accepts (x must fit shared memory next to the weight tiles at the
// planned occupancy); smem_per_sm and smem_per_block_optin are the device's
// (cudaDevAttrMaxSharedMemoryPerMultiprocessor, ...PerBlockOptin). InvalidValue for an
// unaligned x.
bool GemvQuantFusedFits(int64_t m, int64_t k, int smem_per_sm, int smem_per_block_optin);
cudaError_t LaunchGemvQuantFused(QuantType type, const void* w, int64_t n, int64_t k,
                                 const float* x, int64_t m, float* y, int sm_count,
                                 int smem_per_block_optin, cudaStream_t stream);

// ---- gemm.cu ----------------------------------------------------------------------------

// c[i][j] = beta * c[i][j] for i < rows, j < cols (c row-major with leading dimension ldc);
// beta == 0 writes zeros without reading c (BLAS semantics). For GEMMs with k == 0.
cudaError_t LaunchScaleMatrix(float* c, int64_t rows, int64_t cols, int64_t ldc, float beta,
                              cudaStream_t stream);

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_LAUNCH_MATMUL_H_
