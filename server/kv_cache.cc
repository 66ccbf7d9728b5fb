#include "server/kv_cache.h"

#include <algorithm>

namespace anvil::server {

KvPool::KvPool(int64_t n_layer, int64_t kv_dim, int64_t block_tokens, int64_t n_blocks,
               int64_t elem_bytes)
    : n_layer_(n_layer),
      kv_dim_(kv_dim),
      block_tokens_(block_tokens),
      n_blocks_(n_blocks),
      elem_bytes_(elem_bytes) {
  const size_t n = static_cast<size_t>(n_layer * n_blocks * block_tokens * kv_dim * elem_bytes);
  // Uninitialized on purpose: pages are touched only when a block is first written.
  k_.reset(new uint8_t[n]);
  v_.reset(new uint8_t[n]);
  meta_.resize(static_cast<size_t>(n_blocks));
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int32_t KvPool::Allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!cached_free_.empty()) {
    b = cached_free_.begin()->second;
    cached_free_.erase(cached_free_.begin());
    Unregister(b);
  } else {
    return -1;
  }
  meta_[static_cast<size_t>(b)].refs = 1;
  ++used_;
  return b;
}

void KvPool::Ref(int32_t block) {
  Meta& m = meta_[static_cast<size_t>(block)];
  if (m.refs == 0) {  // revived from the cache
    cached_free_.erase({m.released_at, block});
    ++used_;
  }
  ++m.refs;
}

void KvPool::Unref(int32_t block) {
  Meta& m = meta_[static_cast<size_t>(block)];
  if (--m.refs > 0) return;
  --used_;
  if (m.registered) {
    m.released_at = ++clock_;
    cached_free_.insert({m.released_at, block});
  } else {
    free_.push_back(block);
  }
}

uint64_t KvPool::ChainHash(uint64_t parent, absl::Span<const int32_t> tokens) {
  // splitmix64-style mixing of each token into the running value.
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ull + (h << 6) +
         (h >> 2);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

int32_t KvPool::Find(uint64_t parent, absl::Span<const int32_t> tokens) const {
  auto it = by_key_.find(ChainHash(parent, tokens));
  if (it == by_key_.end()) return -1;
  const Meta& m = meta_[static_cast<size_t>(it->second)];
  if (m.parent != parent || !std::equal(m.tokens.begin(), m.tokens.end(), tokens.begin(),
                                        tokens.end())) {
    return -1;
  }
  return it->second;
}

bool KvPool::is_cached_free(int32_t block) const {
  const Meta& m = meta_[static_cast<size_t>(block)];
  return m.refs == 0 && m.registered;
}

void KvPool::Register(int32_t block, uint64_t parent, absl::Span<const int32_t> tokens) {
  const uint64_t key = ChainHash(parent, tokens);
  Meta& m = meta_[static_cast<size_t>(block)];
  if (m.registered || by_key_.contains(key)) return;
  m.registered = true;
  m.key = key;
  m.parent = parent;
  m.tokens.assign(tokens.begin(), tokens.end());
  by_key_[key] = block;
}

void KvPool::Unregister(int32_t block) {
  Meta& m = meta_[static_cast<size_t>(block)];
  if (!m.registered) return;
  by_key_.erase(m.key);
  m.registered = false;
  m.tokens.clear();
}

}  // namespace anvil::server
