// Parsing and validating OpenAI-style request bodies (/v1/completions, /v1/chat/completions,
// /v1/embeddings, the adapter admin calls) into plain structs. Every error is InvalidArgument
// naming the field (server_errors.h), so the HTTP layer answers 400 with "param" set. Unknown
// fields are ignored, as OpenAI's API does; known fields of the wrong type or out of range, and
// features we do not implement (tools, logit_bias, ...), are errors.
#ifndef ANVIL_SERVER_OPENAI_REQUEST_H_
#define ANVIL_SERVER_OPENAI_REQUEST_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/chat_template.h"
#include "server/server_core.h"

namespace anvil::server {

struct CompletionRequest {
  bool chat = false;
  std::string model;                   // "" when absent: the base model
  std::string prompt;                  // completions, a text prompt
  std::vector<int32_t> prompt_tokens;  // completions, or token ids
  std::vector<ChatMessage> messages;   // chat
  GenerationParams params;             // params.adapter is left empty: it comes from `model`
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;          // stream_options.include_usage
  bool logprobs = false;               // chat: logprobs; completions: logprobs is set (k >= 0)
};

struct CompletionLimits {
  int32_t max_n = 8;
  int32_t max_top_logprobs = 20;
};

absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body, bool chat,
                                                         const CompletionLimits& limits);

struct EmbeddingRequest {
  std::string model;
  std::vector<std::string> texts;                 // input as strings
  std::vector<std::vector<int32_t>> token_inputs; // or as token ids
  bool base64 = false;                            // encoding_format "base64"
};

absl::StatusOr<EmbeddingRequest> ParseEmbeddingRequest(std::string_view body, int32_t max_inputs);

struct AdapterRequest {
  std::string name;
  std::string path;
};
// {"name": "...", "path": "..."}; names are [A-Za-z0-9_.-]+ (they end up in model ids).
absl::StatusOr<AdapterRequest> ParseAdapterRequest(std::string_view body);
absl::Status ValidateAdapterName(const std::string& name);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_OPENAI_REQUEST_H_
