// AMX tile configurations shared by the kernels that use tiles (matmul_blocksum_avx512.cc,
// gemm_split_bf16_amx.cc). A thread has one tile configuration at a time; each kernel asks for
// its own before its first tile instruction, and the load is skipped when it is already there.
// Only for translation units compiled with -mamx-tile.
#ifndef ANVIL_KERNELS_CPU_AMX_TILES_H_
#define ANVIL_KERNELS_CPU_AMX_TILES_H_

#include <immintrin.h>

#include <cstdint>

namespace anvil::cpu {

// The 64-byte LDTILECFG operand (palette 1): per tile, bytes per row and rows.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(AmxTileConfig) == 64);

// Loads `config` (which must outlive every use: a static) on this thread unless it is the one
// this thread loaded last.
inline void UseAmxTiles(const AmxTileConfig& config) {
  static thread_local const AmxTileConfig* loaded = nullptr;
  if (loaded == &config) return;
  _tile_loadconfig(&config);
  loaded = &config;
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_AMX_TILES_H_
