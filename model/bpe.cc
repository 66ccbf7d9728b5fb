// BPE merge loop with a min-heap keyed by (rank, left position), as llama.cpp's
// llm_tokenizer_bpe_session. Symbols are integer ids of their texts, so a stale heap entry is
// recognised by comparing ids instead of strings.
#include "model/bpe.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/byte_unicode.h"
#include "model/splitmix64.h"

namespace anvil {
namespace {

// Our abseil's string_view is its own type, so heterogeneous lookups need a conversion.
absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const std::vector<std::string>& tokens, const std::vector<std::string>& merges) {
  std::unique_ptr<BpeModel> m(new BpeModel());
  m->n_tokens_ = static_cast<int32_t>(tokens.size());
  m->symbol_ids_.reserve(tokens.size() + merges.size() / 8);
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto [it, inserted] = m->symbol_ids_.try_emplace(tokens[i], static_cast<int32_t>(i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("vocabulary: token '", tokens[i],
                                                     "' appears twice (ids ", it->second,
                                                     " and ", i, ")"));
    }
  }
  m->n_symbols_ = m->n_tokens_;
  m->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string::npos;
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.ggml.merges[", rank, "] = '", merge, "' has no 'left right' separator"));
    }
    const std::string_view left(merge.data(), space);
    const std::string_view right(merge.data() + space + 1, merge.size() - space - 1);
    const int32_t l = m->Intern(left);
    const int32_t r = m->Intern(right);
    const int32_t result = m->Intern(std::string(left) + std::string(right));
    // A repeated pair keeps its first (lowest) rank, as llama.cpp's bpe_ranks.emplace.
    m->merges_.try_emplace(PairKey(l, r), Merge{static_cast<int32_t>(rank), result});
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m->symbol_ids_.find(ByteToUnicodeUtf8(static_cast<uint8_t>(b)));
    m->byte_symbol_[b] = it == m->symbol_ids_.end() ? -1 : it->second;
  }
  return m;
}

int32_t BpeModel::Intern(std::string_view text) {
  auto it = symbol_ids_.find(AsAbsl(text));
  if (it != symbol_ids_.end()) return it->second;
  const int32_t id = n_symbols_++;
  symbol_ids_.emplace(std::string(text), id);
  return id;
}

int32_t BpeModel::Find(std::string_view text) const {
  auto it = symbol_ids_.find(AsAbsl(text));
  return it != symbol_ids_.end() && it->second < n_tokens_ ? it->second : -1;
}

namespace {

struct Symbol {
  int32_t id;      // symbol id (text), -1 if the text is not in the table
  int32_t prev;    // index of the previous live symbol, -1 at the start
  int32_t next;    // index of the next live symbol, -1 at the end
  uint32_t begin;  // raw byte range of the piece it covers; begin == end once merged away
  uint32_t end;
};

struct Candidate {
  int32_t rank;
  int32_t left;  // symbol index; the right one is symbols[left].next when still valid
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;  // symbol id after merging
};

// std heap functions build a max-heap; "greater" puts the lowest (rank, left) on top.
bool Later(const Candidate& a, const Candidate& b) {
  return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
}

}  // namespace

bool MergeDropout::Drop() { return UnitInterval(SplitMix64Next(&state)) < p; }

void BpeModel::EncodePiece(std::string_view piece, bool ignore_merges, std::vector<int32_t>* out,
                           MergeDropout* dropout) const {
  if (dropout != nullptr && dropout->p <= 0.0) dropout = nullptr;
  if (piece.empty()) return;
  const auto* bytes = reinterpret_cast<const uint8_t*>(piece.data());
  auto encoded = [&](uint32_t begin, uint32_t end) {
    std::string s;
    for (uint32_t i = begin; i < end; ++i) s += ByteToUnicodeUtf8(bytes[i]);
    return s;
  };
  if (ignore_merges && dropout == nullptr) {
    if (int32_t id = Find(encoded(0, static_cast<uint32_t>(piece.size()))); id >= 0) {
      out->push_back(id);
      return;
    }
  }

  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = Symbol{byte_symbol_[bytes[i]], i - 1, i + 1 < n ? i + 1 : -1,
                        static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1)};
  }
  std::vector<Candidate> heap;
  auto try_push = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const int32_t l = symbols[left].id;
    const int32_t r = symbols[right].id;
    if (l < 0 || r < 0) return;
    auto it = merges_.find(PairKey(l, r));
    if (it == merges_.end()) return;
    heap.push_back(Candidate{it->second.rank, left, right, l, r, it->second.result});
    std::push_heap(heap.begin(), heap.end(), Later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) try_push(i, i + 1);
  std::vector<Candidate> skipped;

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), Later);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // Stale if either side was merged away or has changed text since the push.
    if (left.begin == left.end || right.begin == right.end || left.id != c.left_id ||
        right.id != c.right_id || left.next != c.right) {
      continue;
    }
    // A dropped merge waits until some other merge happens, then competes again (as Hugging
    // Face tokenizers' BPE does); when every remaining merge is dropped, merging ends.
    if (dropout != nullptr && dropout->Drop()) {
      skipped.push_back(c);
      continue;
    }
    for (const Candidate& k : skipped) {
      heap.push_back(k);
      std::push_heap(heap.begin(), heap.end(), Later);
    }
    skipped.clear();
    left.id = c.result;
    left.end = right.end;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.begin = right.end;
    try_push(left.prev, c.left);
    try_push(c.left, left.next);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0 && s.id < n_tokens_) {
      out->push_back(s.id);
      continue;
    }
    // Not a token: llama.cpp falls back to looking up each byte of the encoded text as a
    // one-byte token and drops the bytes that are not tokens. Byte-level vocabularies
    // normally never get here.
    for (char ch : encoded(s.begin, s.end)) {
      if (int32_t id = Find(std::string_view(&ch, 1)); id >= 0) out->push_back(id);
    }
  }
}

}  // namespace anvil
