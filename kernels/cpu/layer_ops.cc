// CPU backend for the elementwise and per-row layer ops (RmsNorm, Rope, SwiGlu, AddInPlace,
// GetRows) and the CPU feature check, all bit-identical to the reference (the same operations
// with the same roundings and fusions). Attention lives in attention.cc, MatMul in matmul.cc.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/dequantize_avx2.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/reference/reference.h"

namespace anvil::cpu {
namespace {

// Elements of streaming work per pool chunk: below this, waking a thread costs more than it saves.
constexpr int64_t kChunkElems = 16384;

int64_t RowsPerChunk(int64_t row_elems) {
  return std::max<int64_t>(1, kChunkElems / std::max<int64_t>(1, row_elems));
}

// CPUID, read directly: clang 14's __builtin_cpu_supports does not know "f16c".
bool CpuHasAvx2FmaF16c() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!(fma && osxsave && avx && f16c)) return false;
  // The OS must save the YMM registers (XCR0 bits 1 and 2).
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 6u) != 6u) return false;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return b & (1u << 5);  // AVX2
}

}  // namespace

bool Supported() {
  static const bool supported = CpuHasAvx2FmaF16c();
  return supported;
}

// AVX-VNNI (VEX-encoded vpdpbusd): CPUID leaf 7 subleaf 1, EAX bit 4, on top of AVX2. Setting
// ANVIL_NO_AVXVNNI in the environment turns it off (to compare the two builds of a kernel).
bool HasAvxVnni() {
  static const bool has = [] {
    if (!Supported() || std::getenv("ANVIL_NO_AVXVNNI") != nullptr) return false;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    unsigned a, b, c, d;
    __cpuid_count(7, 1, a, b, c, d);
    return (a & (1u << 4)) != 0;
  }();
  return has;
}

bool HasAvx512Vnni() {
  static const bool has = [] {
    if (!Supported() || std::getenv("ANVIL_NO_AVX512") != nullptr) return false;
    if (__get_cpuid_max(0, nullptr) < 7) return false;
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    if ((c & (1u << 27)) == 0) return false;  // OSXSAVE
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xE6u) != 0xE6u) return false;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned f = 1u << 16, dq = 1u << 17, bw = 1u << 30, vl = 1u << 31;
    return (b & (f | dq | bw | vl)) == (f | dq | bw | vl) && (c & (1u << 11)) != 0;  // VNNI
  }();
  return has;
}

bool HasAmx(unsigned edx_feature_bit) {
  if (!HasAvx512Vnni() || std::getenv("ANVIL_NO_AMX") != nullptr) return false;
  unsigned a, b, c, d;
  __cpuid_count(7, 0, a, b, c, d);
  if ((d & (1u << 24)) == 0 || (d & (1u << edx_feature_bit)) == 0) return false;  // AMX-TILE
  // Linux hands out the 8 KB tile state only on request (XFEATURE_XTILEDATA = 18).
  constexpr long kArchReqXcompPerm = 0x1023;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, 18) == 0;
}

bool HasAmxInt8() {
  static const bool has = HasAmx(25);
  return has;
}

absl::Status RmsNorm(ThreadPool* pool, const RmsNormArgs& a) {
  ParallelFor(pool, a.t, RowsPerChunk(a.c), [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* x = a.x + t * a.c;
      float* y = a.y + t * a.c;
      // The float squares summed in double in index order, as the reference (and ggml) does: a
      // dependent chain, but short next to the rest of a layer, and exact.
      double sum = 0.0;
      for (int64_t i = 0; i < a.c; ++i) sum += static_cast<double>(x[i] * x[i]);
      const float mean = static_cast<float>(sum / a.c);
      const float scale = 1.0f / std::sqrt(mean + a.eps);
      const __m256 sv = _mm256_set1_ps(scale);
      int64_t i = 0;
      for (; i + 8 <= a.c; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv),
                                              _mm256_loadu_ps(a.w + i)));
      }
      for (; i < a.c; ++i) y[i] = (x[i] * scale) * a.w[i];
    }
  });
  return absl::OkStatus();
}

absl::Status Rope(ThreadPool* pool, const RopeArgs& a) {
  const int64_t half = a.n_rot / 2;
  ParallelFor(pool, a.t, RowsPerChunk(a.h * a.d), [&](int64_t t0, int64_t t1, int) {
    // cos/sin once per token (the reference's exact schedule), interleaved for the adjacent-pair
    // (NORM) layout as cs2 = [c0 s0 c1 s1 ...] and sc2 = [s0 c0 s1 c1 ...].
    std::vector<float> cs(half), sn(half), cs2(2 * half), sc2(2 * half);
    for (int64_t t = t0; t < t1; ++t) {
      reference::RopeCosSin(a.pos[t], a.n_rot, a.freq_base, cs.data(), sn.data());
      if (a.inverse) {  // rotate by -theta: sin negated (exact), as the reference does
        for (float& s : sn) s = -s;
      }
      for (int64_t i = 0; i < half; ++i) {
        cs2[2 * i] = sc2[2 * i + 1] = cs[i];
        cs2[2 * i + 1] = sc2[2 * i] = sn[i];
      }
      for (int64_t h = 0; h < a.h; ++h) {
        float* x = a.x + (t * a.h + h) * a.d;
        int64_t i = 0;
        // The reference's fused forms: y0 = fma(x0, c, -(x1 * s)), y1 = fma(x0, s, x1 * c).
        if (a.neox) {
          for (; i + 8 <= half; i += 8) {
            const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + half);
            const __m256 c = _mm256_loadu_ps(cs.data() + i), s = _mm256_loadu_ps(sn.data() + i);
            _mm256_storeu_ps(x + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
            _mm256_storeu_ps(x + i + half, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
          }
        } else {
          // Lanes hold (x0, x1) pairs: fmaddsub(x0 x0, c s, x1*s x1*c) gives both outputs.
          for (; 2 * i + 8 <= a.n_rot; i += 4) {
            const __m256 v = _mm256_loadu_ps(x + 2 * i);
            const __m256 rhs =
                _mm256_mul_ps(_mm256_movehdup_ps(v), _mm256_loadu_ps(sc2.data() + 2 * i));
            _mm256_storeu_ps(x + 2 * i,
                             _mm256_fmaddsub_ps(_mm256_moveldup_ps(v),
                                                _mm256_loadu_ps(cs2.data() + 2 * i), rhs));
          }
        }
        for (; i < half; ++i) {
          const int64_t i0 = a.neox ? i : 2 * i;
          const int64_t i1 = a.neox ? i + half : 2 * i + 1;
          const float x0 = x[i0], x1 = x[i1];
          x[i0] = std::fma(x0, cs[i], -(x1 * sn[i]));
          x[i1] = std::fma(x0, sn[i], x1 * cs[i]);
        }
      }
    }
  });
  return absl::OkStatus();
}

absl::Status SwiGlu(ThreadPool* pool, const SwiGluArgs& a) {
  ParallelFor(pool, a.n, kChunkElems, [&](int64_t i0, int64_t i1, int) {
    const __m256 one = _mm256_set1_ps(1.0f);
    // silu(g) * up = (g / (1 + exp(0 - g))) * up, each step rounded, as the reference does.
    auto step = [&](__m256 g, __m256 up) {
      const __m256 e = ExpGgmlAvx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
      return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), up);
    };
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
      _mm256_storeu_ps(a.out + i, step(_mm256_loadu_ps(a.gate + i), _mm256_loadu_ps(a.up + i)));
    }
    if (i < i1) {  // the tail through the same vector code, padded
      alignas(32) float g[8] = {}, u[8] = {}, o[8];
      std::memcpy(g, a.gate + i, (i1 - i) * sizeof(float));
      std::memcpy(u, a.up + i, (i1 - i) * sizeof(float));
      _mm256_store_ps(o, step(_mm256_load_ps(g), _mm256_load_ps(u)));
      std::memcpy(a.out + i, o, (i1 - i) * sizeof(float));
    }
  });
  return absl::OkStatus();
}

absl::Status AddInPlace(ThreadPool* pool, float* y, const float* x, int64_t n) {
  ParallelFor(pool, n, 4 * kChunkElems, [&](int64_t i0, int64_t i1, int) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
      _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    }
    for (; i < i1; ++i) y[i] += x[i];
  });
  return absl::OkStatus();
}

absl::Status GetRows(ThreadPool* pool, const GetRowsArgs& a) {
  if (a.c % BlockElems(a.type) != 0) {
    return absl::InvalidArgumentError("get_rows: C is not a multiple of the block size");
  }
  const int64_t row_bytes = a.c / BlockElems(a.type) * BlockBytes(a.type);
  const auto* table = static_cast<const uint8_t*>(a.table);
  ParallelFor(pool, a.t, RowsPerChunk(a.c), [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      DequantizeRowAvx2(a.type, table + a.ids[t] * row_bytes, a.out + t * a.c, a.c);
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
