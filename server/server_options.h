// anvil-server's configuration: where it listens, what it loads, its limits and its token.
// main.cc fills it from flags; tests fill it directly. The engine's own knobs (batch, queue, KV
// cache, request limits) travel inside as EngineOptions.
#ifndef ANVIL_SERVER_SERVER_OPTIONS_H_
#define ANVIL_SERVER_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "server/engine.h"

namespace anvil::server {

struct ServerOptions {
  std::string model_path;            // a GGUF file
  std::string model_id;              // the name clients use; empty: the file name without .gguf
  std::string host = "127.0.0.1";
  int grpc_port = 7080;              // 0: a free port; -1: no gRPC server
  int http_port = 8080;              // 0: a free port; -1: no HTTP server
  std::string token;                 // empty: no authentication
  std::vector<std::pair<std::string, std::string>> adapters;  // NAME, PATH loaded at start
  EngineOptions engine;
  int32_t default_max_tokens = 256;  // chat / gRPC requests that give none (completions: 16)
  int32_t max_n = 8;                 // choices per HTTP request
  int64_t max_body_bytes = 4 << 20;  // HTTP request bodies past it: 413
  int32_t max_embed_inputs = 256;
  int http_threads = 0;              // 0: enough for max_running + max_queue + 8 connections
  double drain_timeout_s = 30;       // SIGTERM: how long in-flight requests may take
  int retry_after_s = 1;             // the Retry-After of a 429
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_SERVER_OPTIONS_H_
