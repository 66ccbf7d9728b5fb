// The block-managed KV cache: a fixed pool of blocks of `block_tokens` positions (K and V of
// every layer), handed to sequences through block tables, ref-counted so that full blocks of an
// identical prompt prefix are shared (the prefix cache). A released block that holds a
// registered prefix stays findable until the pool needs it (least recently released first).
#ifndef ANVIL_SERVER_KV_CACHE_H_
#define ANVIL_SERVER_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace anvil::server {

class KvPool {
 public:
  // kv_dim = Hkv * D elements per position per layer, each elem_bytes wide (4: float, 2: F16).
  KvPool(int64_t n_layer, int64_t kv_dim, int64_t block_tokens, int64_t n_blocks,
         int64_t elem_bytes = 4);

  int64_t block_tokens() const { return block_tokens_; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t used() const { return used_; }                  // blocks with refcount > 0
  int64_t available() const { return n_blocks_ - used_; }  // free or cached-but-unreferenced

  // K / V of `block` in `layer`: block_tokens * kv_dim elements (the runner picks their order).
  void* k(int64_t layer, int32_t block) { return Row(k_, layer, block); }
  void* v(int64_t layer, int32_t block) { return Row(v_, layer, block); }

  // A block for new KV (refcount 1): a never-registered free block first, else the least
  // recently released cached one (its registration is dropped). -1 when none is available.
  int32_t Allocate();
  void Ref(int32_t block);
  void Unref(int32_t block);

  // The prefix cache. The key of a full block is the hash of everything before it (`parent`)
  // chained with its tokens; lookups compare the tokens and the parent exactly.
  static uint64_t ChainHash(uint64_t parent, absl::Span<const int32_t> tokens);
  // The registered block for (parent, tokens), or -1. Does not take a reference.
  int32_t Find(uint64_t parent, absl::Span<const int32_t> tokens) const;
  bool is_cached_free(int32_t block) const;  // refcount 0 but registered
  // Registers `block` (whose KV holds `tokens` after the prefix `parent`) unless an equal
  // block is registered already.
  void Register(int32_t block, uint64_t parent, absl::Span<const int32_t> tokens);

 private:
  void* Row(const std::unique_ptr<uint8_t[]>& base, int64_t layer, int32_t block) {
    return base.get() + ((layer * n_blocks_ + block) * block_tokens_) * kv_dim_ * elem_bytes_;
  }
  struct Meta {
    int32_t refs = 0;
    bool registered = false;
    uint64_t key = 0, parent = 0;
    uint64_t released_at = 0;
    std::vector<int32_t> tokens;
  };
  void Unregister(int32_t block);

  int64_t n_layer_, kv_dim_, block_tokens_, n_blocks_, elem_bytes_;
  std::unique_ptr<uint8_t[]> k_, v_;  // [layer][block][block_tokens * kv_dim], uninitialized
  std::vector<Meta> meta_;
  std::vector<int32_t> free_;                          // refcount 0, not registered
  // (released_at, block) of the blocks with refcount 0 that are registered.
  std::set<std::pair<uint64_t, int32_t>> cached_free_;
  absl::flat_hash_map<uint64_t, int32_t> by_key_;
  uint64_t clock_ = 0;
  int64_t used_ = 0;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_KV_CACHE_H_
