// Rendering: the template renders the whole chat once; prefixes rendered with the generation
// prompt locate where each trained assistant turn starts, and the family's stop string after it
// where the turn's trained part ends. Segments are tokenized separately (so a token never
// straddles a mask boundary) and the result is checked against tokenizing the full text, which
// is what inference does.
#include "train/render.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"

namespace anvil::train {
namespace {

struct ByteRange {
  size_t begin = 0;
  size_t end = 0;
};

std::string Escaped(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"') {
      out += "\\\"";
    } else {
      out.push_back(c);
    }
  }
  return absl::StrCat("\"", out, "\"");
}

// The bytes of `full` that each trained assistant turn (index >= completion_start) must
// generate: from the end of the generation prompt to the end of the last stop string of the turn.
absl::StatusOr<std::vector<ByteRange>> TrainedRanges(const ChatTemplate& tmpl,
                                                     absl::Span<const ChatMessage> messages,
                                                     size_t completion_start,
                                                     const std::string& full) {
  const std::vector<std::string> stops = tmpl.StopStrings();
  std::vector<ByteRange> ranges;
  for (size_t k = completion_start; k < messages.size(); ++k) {
    if (messages[k].role != "assistant") continue;
    ANVIL_ASSIGN_OR_RETURN(const std::string prompt, tmpl.Render(messages.first(k), true));
    if (full.compare(0, prompt.size(), prompt) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", k, " (assistant): the ", ChatFamilyName(tmpl.family()),
          " template renders the conversation before it differently with a generation prompt "
          "than inside the whole chat, so the answer cannot be located (does the chat start "
          "with an assistant message?)"));
    }
    ANVIL_ASSIGN_OR_RETURN(const std::string upto, tmpl.Render(messages.first(k + 1), false));
    // Templates may append a closing token after the last message (Phi-3's eos): compare with
    // the full text only as far as both agree.
    size_t common = 0;
    const size_t limit = std::min(upto.size(), full.size());
    while (common < limit && upto[common] == full[common]) ++common;
    const std::string_view turn = std::string_view(full).substr(
        prompt.size(), common > prompt.size() ? common - prompt.size() : 0);
    size_t end = std::string::npos;
    for (const std::string& stop : stops) {
      const size_t at = turn.rfind(stop);
      if (at != std::string_view::npos) {
        const size_t e = prompt.size() + at + stop.size();
        end = end == std::string::npos ? e : std::max(end, e);
      }
    }
    if (end == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", k, " (assistant): no end-of-turn marker (", stops.empty() ? "" : stops[0],
          ") follows the answer in the rendered chat"));
    }
    if (!ranges.empty() && prompt.size() < ranges.back().end) {
      return absl::InternalError(absl::StrCat("message ", k, ": trained ranges overlap"));
    }
    ranges.push_back({prompt.size(), end});
  }
  return ranges;
}

int64_t CountTargets(const SequenceExample& e) {
  return std::count_if(e.targets.begin(), e.targets.end(), [](int32_t t) { return t >= 0; });
}

void AddToStats(const SequenceExample& e, RenderStats* stats) {
  stats->tokens += static_cast<int64_t>(e.tokens.size());
  stats->trained_tokens += CountTargets(e);
}

}  // namespace

std::string RenderStats::Summary() const {
  return absl::StrFormat(
      "%d records -> %d examples (%d truncated, %d dropped with nothing left to train on after "
      "truncation); %d tokens, %d trained",
      records, examples, truncated, dropped_no_target, tokens, trained_tokens);
}

absl::StatusOr<SequenceExample> ChatRenderer::Render(const ChatRecord& record, LossMask mask,
                                                     MergeDropout* dropout) const {
  const absl::Span<const ChatMessage> messages(record.messages);
  ANVIL_ASSIGN_OR_RETURN(const std::string full, template_.Render(messages, false));
  std::vector<ByteRange> ranges;
  if (mask == LossMask::kCompletion) {
    ANVIL_ASSIGN_OR_RETURN(ranges,
                           TrainedRanges(template_, messages, record.completion_start, full));
  }
  // Segments alternate untrained / trained; empty ones add no tokens.
  SequenceExample ex;
  ex.source_line = record.line;
  std::vector<bool> trained;
  const bool all = mask == LossMask::kAllTokens;
  auto tokenize = [&](MergeDropout* d) {
    ex.tokens.clear();
    trained.clear();
    auto add = [&](size_t begin, size_t end, bool is_trained) {
      if (end <= begin) return;
      for (const int32_t id :
           tokenizer_.Encode(std::string_view(full).substr(begin, end - begin), false, true, d)) {
        ex.tokens.push_back(id);
        trained.push_back(is_trained);
      }
    };
    if (tokenizer_.add_bos()) {
      ex.tokens.push_back(tokenizer_.bos_id());
      trained.push_back(all);
    }
    size_t at = 0;
    for (const ByteRange& r : ranges) {
      add(at, r.begin, all);
      add(r.begin, r.end, true);
      at = r.end;
    }
    add(at, full.size(), all);
    if (tokenizer_.vocab().add_eos) {
      ex.tokens.push_back(tokenizer_.eos_id());
      trained.push_back(all);
    }
  };
  tokenize(nullptr);

  // Never train on a tokenization that inference would not produce.
  const std::vector<int32_t> reference = tokenizer_.Encode(full, true, true);
  if (reference != ex.tokens) {
    size_t i = 0;
    while (i < reference.size() && i < ex.tokens.size() && reference[i] == ex.tokens[i]) ++i;
    auto piece = [&](const std::vector<int32_t>& ids) {
      return i < ids.size() ? absl::StrCat(ids[i], " ", Escaped(tokenizer_.TokenToPiece(ids[i])))
                            : std::string("end of sequence");
    };
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizing the rendered chat at the answer boundaries gives other tokens than "
        "tokenizing it whole, as inference does (token ", i, ": ", piece(ex.tokens), " vs ",
        piece(reference),
        "); a token would straddle the start or end of an answer (e.g. an answer that starts "
        "with whitespace)"));
  }
  if (dropout != nullptr && dropout->p > 0.0) tokenize(dropout);

  const size_t n = ex.tokens.size();
  ex.targets.assign(n, -1);
  for (size_t i = 0; i + 1 < n; ++i) {
    if (trained[i + 1]) ex.targets[i] = ex.tokens[i + 1];
  }
  return ex;
}

absl::StatusOr<PreferenceExample> ChatRenderer::Render(const PreferenceRecord& record) const {
  PreferenceExample out;
  out.source_line = record.line;
  for (const bool chosen : {true, false}) {
    ChatRecord chat;
    chat.line = record.line;
    chat.messages = record.prompt;
    chat.completion_start = record.prompt.size();
    const std::vector<ChatMessage>& answer = chosen ? record.chosen : record.rejected;
    chat.messages.insert(chat.messages.end(), answer.begin(), answer.end());
    absl::StatusOr<SequenceExample> e = Render(chat, LossMask::kCompletion);
    if (!e.ok()) {
      return absl::Status(e.status().code(),
                          absl::StrCat(chosen ? "chosen: " : "rejected: ", e.status().message()));
    }
    (chosen ? out.chosen : out.rejected) = *std::move(e);
  }
  // The shared prompt: everything before the first trained target must agree.
  auto prompt_len = [](const SequenceExample& e) {
    return static_cast<size_t>(std::find_if(e.targets.begin(), e.targets.end(),
                                            [](int32_t t) { return t >= 0; }) -
                               e.targets.begin()) + 1;
  };
  const size_t p = std::min({prompt_len(out.chosen), prompt_len(out.rejected),
                             out.chosen.tokens.size(), out.rejected.tokens.size()});
  if (!std::equal(out.chosen.tokens.begin(), out.chosen.tokens.begin() + p,
                  out.rejected.tokens.begin())) {
    return absl::InternalError("chosen and rejected do not share the prompt tokens");
  }
  return out;
}

bool TruncateExample(SequenceExample* e, int64_t max_length) {
  if (max_length > 0 && static_cast<int64_t>(e->tokens.size()) > max_length) {
    e->tokens.resize(static_cast<size_t>(max_length));
    e->targets.resize(static_cast<size_t>(max_length));
    e->targets.back() = -1;  // its target was the first dropped token
  }
  return CountTargets(*e) > 0;
}

absl::StatusOr<std::vector<SequenceExample>> RenderSftDataset(const Dataset& data,
                                                              const ChatRenderer& renderer,
                                                              const RenderOptions& options,
                                                              RenderStats* stats) {
  if (data.kind != DatasetKind::kSft) {
    return absl::FailedPreconditionError(absl::StrCat(
        data.name, ": holds preference records (prompt/chosen/rejected); SFT and LM training "
                   "need messages or prompt/completion records"));
  }
  RenderStats local;
  RenderStats& s = stats != nullptr ? *stats : local;
  LineErrors errors(data.name, ReadOptions().max_listed_errors);
  std::vector<SequenceExample> out;
  for (const ChatRecord& r : data.chats) {
    ++s.records;
    // One stream per record, so a record's tokens do not depend on the records before it.
    const uint64_t line_hash = static_cast<uint64_t>(r.line) * 0xD1B54A32D192ED03ull;
    MergeDropout dropout{options.bpe_dropout, options.dropout_seed ^ line_hash};
    absl::StatusOr<SequenceExample> e = renderer.Render(r, options.mask, &dropout);
    if (!e.ok()) {
      errors.Add(r.line, e.status().message());
      continue;
    }
    const bool cut = static_cast<int64_t>(e->tokens.size()) > options.max_length;
    if (!TruncateExample(&*e, options.max_length)) {
      ++s.dropped_no_target;
      continue;
    }
    s.truncated += cut;
    ++s.examples;
    AddToStats(*e, &s);
    out.push_back(*std::move(e));
  }
  ANVIL_RETURN_IF_ERROR(errors.ToStatus("records that cannot be rendered"));
  return out;
}

absl::StatusOr<std::vector<PreferenceExample>> RenderPreferenceDataset(
    const Dataset& data, const ChatRenderer& renderer, const RenderOptions& options,
    RenderStats* stats) {
  if (data.kind != DatasetKind::kPreference) {
    return absl::FailedPreconditionError(absl::StrCat(
        data.name, ": holds SFT records; DPO needs prompt/chosen/rejected records"));
  }
  RenderStats local;
  RenderStats& s = stats != nullptr ? *stats : local;
  LineErrors errors(data.name, ReadOptions().max_listed_errors);
  std::vector<PreferenceExample> out;
  for (const PreferenceRecord& r : data.preferences) {
    ++s.records;
    absl::StatusOr<PreferenceExample> e = renderer.Render(r);
    if (!e.ok()) {
      errors.Add(r.line, e.status().message());
      continue;
    }
    const bool cut = static_cast<int64_t>(std::max(e->chosen.tokens.size(),
                                                   e->rejected.tokens.size())) > options.max_length;
    const bool chosen_left = TruncateExample(&e->chosen, options.max_length);
    const bool rejected_left = TruncateExample(&e->rejected, options.max_length);
    if (!chosen_left || !rejected_left) {
      ++s.dropped_no_target;
      continue;
    }
    s.truncated += cut;
    ++s.examples;
    AddToStats(e->chosen, &s);
    AddToStats(e->rejected, &s);
    out.push_back(*std::move(e));
  }
  ANVIL_RETURN_IF_ERROR(errors.ToStatus("records that cannot be rendered"));
  return out;
}

absl::StatusOr<std::vector<SequenceExample>> PackExamples(absl::Span<const SequenceExample> examples,
                                                          int64_t max_length, int32_t pad_id) {
  if (max_length <= 0) return absl::InvalidArgumentError("packing: max_length must be > 0");
  std::vector<size_t> order(examples.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return examples[a].tokens.size() > examples[b].tokens.size();
  });
  std::vector<SequenceExample> rows;
  std::multimap<int64_t, size_t> free_space;  // room left -> row; equal keys in creation order
  for (const size_t i : order) {
    const SequenceExample& e = examples[i];
    const int64_t len = static_cast<int64_t>(e.tokens.size());
    if (len > max_length || e.targets.size() != e.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "packing: example from line ", e.source_line, " has ", len, " tokens and ",
          e.targets.size(), " targets; max_length is ", max_length));
    }
    if (len == 0) continue;
    auto fit = free_space.lower_bound(len);  // the tightest row it fits in
    size_t row;
    int64_t room;
    if (fit == free_space.end()) {
      row = rows.size();
      rows.emplace_back();
      room = max_length;
    } else {
      row = fit->second;
      room = fit->first;
      free_space.erase(fit);
    }
    SequenceExample& r = rows[row];
    r.tokens.insert(r.tokens.end(), e.tokens.begin(), e.tokens.end());
    r.targets.insert(r.targets.end(), e.targets.begin(), e.targets.end());
    r.targets.back() = -1;  // never predict across the boundary
    if (room - len > 0) free_space.emplace(room - len, row);
  }
  for (SequenceExample& r : rows) {
    r.tokens.resize(static_cast<size_t>(max_length), pad_id);
    r.targets.resize(static_cast<size_t>(max_length), -1);
  }
  return rows;
}

int32_t PaddingToken(const Tokenizer& tokenizer) {
  if (tokenizer.vocab().pad_id >= 0) return tokenizer.vocab().pad_id;
  if (tokenizer.eos_id() >= 0) return tokenizer.eos_id();
  return 0;
}

}  // namespace anvil::train
