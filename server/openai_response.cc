#include "server/openai_response.h"

#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace anvil::server {
namespace {

using Json = nlohmann::json;

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string RandomHex(int n) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(kHex[rng() % 16]);
  return s;
}

Json Bytes(const std::string& piece) {
  Json b = Json::array();
  for (unsigned char c : piece) b.push_back(static_cast<int>(c));
  return b;
}

// Chat: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
Json ChatLogprobs(const std::vector<Event>& events, const Tokenizer& tok) {
  Json content = Json::array();
  for (const Event& e : events) {
    const std::string piece = tok.TokenToPiece(e.token);
    Json top = Json::array();
    for (const TokenLogprob& t : e.top) {
      const std::string p = tok.TokenToPiece(t.token);
      top.push_back({{"token", p}, {"logprob", t.logprob}, {"bytes", Bytes(p)}});
    }
    content.push_back(
        {{"token", piece}, {"logprob", e.logprob}, {"bytes", Bytes(piece)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

// Completions (legacy): parallel arrays, top_logprobs as {piece: logprob} maps.
Json CompletionLogprobs(const std::vector<Event>& events, const Tokenizer& tok,
                        int64_t text_offset) {
  Json tokens = Json::array(), lps = Json::array(), tops = Json::array(), offsets = Json::array();
  for (const Event& e : events) {
    const std::string piece = tok.TokenToPiece(e.token);
    tokens.push_back(piece);
    lps.push_back(e.logprob);
    Json top = Json::object();
    for (const TokenLogprob& t : e.top) top[tok.TokenToPiece(t.token)] = t.logprob;
    tops.push_back(top);
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(piece.size());
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops},
          {"text_offset", offsets}};
}

Json UsageJson(const UsageCounts& u) {
  Json j = {{"prompt_tokens", u.prompt},
            {"completion_tokens", u.completion},
            {"total_tokens", u.prompt + u.completion}};
  j["prompt_tokens_details"] = {{"cached_tokens", u.cached}};
  return j;
}

Json Envelope(const ResponseMeta& meta, const char* object) {
  return {{"id", meta.id}, {"object", object}, {"created", meta.created}, {"model", meta.model},
          {"system_fingerprint", "anvil"}};
}

}  // namespace

ResponseMeta NewResponseMeta(bool chat, const std::string& model) {
  ResponseMeta m;
  m.chat = chat;
  m.id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", RandomHex(24));
  m.created = absl::ToUnixSeconds(absl::Now());
  m.model = model;
  return m;
}

const char* FinishReasonString(FinishReason r) {
  return r == FinishReason::kLength ? "length" : "stop";
}

std::string CompletionBody(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices,
                           const UsageCounts& usage, const Tokenizer& tokenizer, bool logprobs) {
  Json j = Envelope(meta, meta.chat ? "chat.completion" : "text_completion");
  Json cs = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    Json choice = {{"index", i}, {"finish_reason", c.finish_reason}};
    if (meta.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
      choice["logprobs"] = logprobs ? ChatLogprobs(c.events, tokenizer) : Json(nullptr);
    } else {
      choice["text"] = c.text;
      choice["logprobs"] = logprobs ? CompletionLogprobs(c.events, tokenizer, 0) : Json(nullptr);
    }
    cs.push_back(std::move(choice));
  }
  j["choices"] = std::move(cs);
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ChunkBody(const ResponseMeta& meta, const ChunkPart& part, const Tokenizer& tokenizer,
                      bool logprobs, bool include_usage) {
  Json j = Envelope(meta, meta.chat ? "chat.completion.chunk" : "text_completion");
  Json choice = {{"index", part.index}};
  const bool with_logprobs = logprobs && !part.events.empty();
  if (meta.chat) {
    Json delta = Json::object();
    if (part.first) delta["role"] = "assistant";
    if (part.finish_reason.empty() || !part.text.empty()) delta["content"] = part.text;
    choice["delta"] = std::move(delta);
    choice["logprobs"] = with_logprobs ? ChatLogprobs(part.events, tokenizer) : Json(nullptr);
  } else {
    choice["text"] = part.text;
    choice["logprobs"] =
        with_logprobs ? CompletionLogprobs(part.events, tokenizer, 0) : Json(nullptr);
  }
  choice["finish_reason"] =
      part.finish_reason.empty() ? Json(nullptr) : Json(part.finish_reason);
  j["choices"] = Json::array({choice});
  if (include_usage) j["usage"] = nullptr;
  return Dump(j);
}

std::string UsageChunkBody(const ResponseMeta& meta, const UsageCounts& usage) {
  Json j = Envelope(meta, meta.chat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = Json::array();
  j["usage"] = UsageJson(usage);
  return Dump(j);
}

std::string ModelsBody(const std::vector<std::string>& ids, int64_t created) {
  Json data = Json::array();
  for (const std::string& id : ids) {
    data.push_back({{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "anvil"}});
  }
  return Dump({{"object", "list"}, {"data", data}});
}

std::string EmbeddingsBody(const std::string& model, const std::vector<std::vector<float>>& vectors,
                           int64_t prompt_tokens, bool base64) {
  Json data = Json::array();
  for (size_t i = 0; i < vectors.size(); ++i) {
    Json e = {{"object", "embedding"}, {"index", i}};
    if (base64) {
      // x86-64 and every platform we build for are little-endian: the floats' bytes as they lie.
      std::string raw(vectors[i].size() * sizeof(float), '\0');
      std::memcpy(raw.data(), vectors[i].data(), raw.size());
      e["embedding"] = absl::Base64Escape(raw);
    } else {
      e["embedding"] = vectors[i];
    }
    data.push_back(std::move(e));
  }
  return Dump({{"object", "list"},
               {"data", data},
               {"model", model},
               {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}});
}

std::string SseData(const std::string& payload) { return absl::StrCat("data: ", payload, "\n\n"); }

}  // namespace anvil::server
