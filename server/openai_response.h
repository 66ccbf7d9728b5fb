// OpenAI's response shapes, byte for byte in field names and nesting: chat.completion,
// chat.completion.chunk, text_completion (whole and streamed), the model list and embeddings,
// with usage and logprobs. Returns serialized JSON (invalid UTF-8 in token pieces is replaced,
// never thrown), so callers need no JSON library.
#ifndef ANVIL_SERVER_OPENAI_RESPONSE_H_
#define ANVIL_SERVER_OPENAI_RESPONSE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "model/generate.h"
#include "model/tokenizer.h"
#include "server/engine.h"

namespace anvil::server {

struct ResponseMeta {
  std::string id;       // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  bool chat = false;
};
ResponseMeta NewResponseMeta(bool chat, const std::string& model);

// "stop" (a stop string or end of generation) or "length".
const char* FinishReasonString(FinishReason r);

struct UsageCounts {
  int64_t prompt = 0;
  int64_t completion = 0;
  int64_t cached = 0;
};

struct ChoiceResult {
  std::string text;
  std::string finish_reason;
  std::vector<Event> events;  // kept only when logprobs were asked for
};

// The whole (non-streamed) response.
std::string CompletionBody(const ResponseMeta& meta, const std::vector<ChoiceResult>& choices,
                           const UsageCounts& usage, const Tokenizer& tokenizer, bool logprobs);

// One streamed chunk of choice `index`. Chat: `first` adds role "assistant"; a chunk with a
// finish_reason has an empty delta. `events` (may be empty) give the chunk's logprobs.
struct ChunkPart {
  int index = 0;
  bool first = false;
  std::string text;
  std::vector<Event> events;
  std::string finish_reason;  // "" = null
};
std::string ChunkBody(const ResponseMeta& meta, const ChunkPart& part, const Tokenizer& tokenizer,
                      bool logprobs, bool include_usage);
// The last chunk when stream_options.include_usage: no choices, the usage.
std::string UsageChunkBody(const ResponseMeta& meta, const UsageCounts& usage);

// GET /v1/models.
std::string ModelsBody(const std::vector<std::string>& ids, int64_t created);

// POST /v1/embeddings; vectors [inputs][n_embd]. base64: little-endian float32 bytes.
std::string EmbeddingsBody(const std::string& model, const std::vector<std::vector<float>>& vectors,
                           int64_t prompt_tokens, bool base64);

// Server-sent events framing: "data: <payload>\n\n"; the stream ends with "data: [DONE]\n\n".
std::string SseData(const std::string& payload);
inline constexpr char kSseDone[] = "data: [DONE]\n\n";

}  // namespace anvil::server

#endif  // ANVIL_SERVER_OPENAI_RESPONSE_H_
