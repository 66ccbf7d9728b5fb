#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/openai_errors.h"
#include "server/openai_request.h"
#include "server/openai_response.h"

namespace anvil::server {
namespace {

constexpr char kJson[] = "application/json";

// Compares in time that depends only on the lengths, so a wrong token's prefix leaks nothing.
bool TokenMatches(const std::string& header, const std::string& token) {
  const std::string want = "Bearer " + token;
  if (header.size() != want.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < want.size(); ++i) diff |= header[i] ^ want[i];
  return diff == 0;
}

// The route label for metrics: the registered pattern, never a client-chosen path.
std::string RouteLabel(const std::string& path) {
  for (const char* r : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings",
                        "/health", "/metrics"}) {
    if (path == r) return r;
  }
  if (absl::StartsWith(path, "/v1/adapters")) return "/v1/adapters";
  return "other";
}

void ReplyJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, kJson);
}

}  // namespace

void ReplyError(InferenceCore* core, const absl::Status& s, httplib::Response& res) {
  const int status = HttpStatusFor(s.code());
  if (status == 429) res.set_header("Retry-After", std::to_string(core->options().retry_after_s));
  ReplyJson(res, status, ErrorJson(s));
}

HttpServer::HttpServer(InferenceCore* core) : core_(core), svr_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(InferenceCore* core) {
  const ServerOptions& o = core->options();
  std::unique_ptr<HttpServer> s(new HttpServer(core));
  // One thread per connection: every admitted request (running + queued) may hold one while it
  // streams, and refused ones need a thread to hear "429" too.
  const size_t threads = o.http_threads > 0
                             ? o.http_threads
                             : static_cast<size_t>(o.engine.max_running + o.engine.max_queue + 8);
  s->svr_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->svr_->set_payload_max_length(static_cast<size_t>(o.max_body_bytes));
  s->svr_->set_keep_alive_timeout(2);  // an idle keep-alive connection holds a pool thread
  s->svr_->set_read_timeout(30);
  s->svr_->set_write_timeout(30);
  s->Routes();
  const int port = o.http_port == 0 ? s->svr_->bind_to_any_port(o.host)
                                    : (s->svr_->bind_to_port(o.host, o.http_port) ? o.http_port : -1);
  if (port <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("HTTP: cannot listen on ", o.host, ":", o.http_port, " (address in use?)"));
  }
  s->port_ = port;
  httplib::Server* svr = s->svr_.get();
  s->thread_ = std::thread([svr] { svr->listen_after_bind(); });
  return s;
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  svr_->stop();
  thread_.join();
}

void HttpServer::Routes() {
  InferenceCore* core = core_;
  httplib::Server& svr = *svr_;

  // Authentication first, before any body is read.
  svr.set_pre_routing_handler([core](const httplib::Request& req, httplib::Response& res) {
    const std::string& token = core->options().token;
    if (token.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string header = req.get_header_value("Authorization");
    if (TokenMatches(header, token)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_header("Connection", "close");  // the unread body must not be taken for a request
    ReplyError(core,
               absl::UnauthenticatedError(header.empty() ? "missing bearer token (Authorization: "
                                                           "Bearer <token>)"
                                                         : "invalid bearer token"),
               res);
    return httplib::Server::HandlerResponse::Handled;
  });

  // Errors without a body of ours (413 from the payload cap, unknown routes): OpenAI's shape.
  svr.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = absl::StrCat("HTTP ", res.status);
    if (res.status == 413) message = "the request body is too large";
    if (res.status == 404) message = absl::StrCat("no route ", req.method, " ", req.path);
    if (res.status == 400) message = "malformed HTTP request";
    res.set_content(ErrorJsonFor(res.status, message), kJson);
    return httplib::Server::HandlerResponse::Handled;
  }));

  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        res.status = 500;
        res.set_content(ErrorJsonFor(500, absl::StrCat("internal error: ", what)), kJson);
      });

  svr.set_logger([core](const httplib::Request& req, const httplib::Response& res) {
    core->metrics().CountRequest("http", RouteLabel(req.path), std::to_string(res.status));
  });

  svr.Get("/health", [core](const httplib::Request&, httplib::Response& res) {
    const ServingState st = core->state();
    ReplyJson(res, st == ServingState::kServing ? 200 : 503,
              absl::StrCat("{\"status\":\"", ServingStateName(st), "\"}"));
  });

  svr.Get("/metrics", [core](const httplib::Request&, httplib::Response& res) {
    res.set_content(core->RenderMetrics(), "text/plain; version=0.0.4");
  });

  svr.Get("/v1/models", [core](const httplib::Request&, httplib::Response& res) {
    ReplyJson(res, 200, ModelsBody(core->ModelIds(), absl::ToUnixSeconds(absl::Now())));
  });

  svr.Post("/v1/completions", [core](const httplib::Request& req, httplib::Response& res) {
    HandleCompletion(core, /*chat=*/false, req, res);
  });
  svr.Post("/v1/chat/completions", [core](const httplib::Request& req, httplib::Response& res) {
    HandleCompletion(core, /*chat=*/true, req, res);
  });

  svr.Post("/v1/embeddings", [core](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status s = core->CheckServing(); !s.ok()) return ReplyError(core, s, res);
    absl::StatusOr<EmbeddingRequest> r =
        ParseEmbeddingRequest(req.body, core->options().max_embed_inputs);
    if (!r.ok()) return ReplyError(core, r.status(), res);
    absl::StatusOr<std::string> adapter = core->ResolveModelName(r->model);
    if (!adapter.ok()) return ReplyError(core, adapter.status(), res);
    if (!adapter->empty()) {
      return ReplyError(core, absl::InvalidArgumentError("embeddings come from the base model; "
                                                         "name it without an adapter"),
                        res);
    }
    std::vector<std::vector<int32_t>> inputs = r->token_inputs;
    for (const std::string& t : r->texts) {
      absl::StatusOr<std::vector<int32_t>> tokens = core->TokenizePrompt(t);
      if (!tokens.ok()) return ReplyError(core, tokens.status(), res);
      inputs.push_back(*std::move(tokens));
    }
    std::vector<std::vector<float>> vectors;
    int64_t n_tokens = 0;
    for (const auto& tokens : inputs) {
      absl::StatusOr<std::vector<float>> v = core->Embed(tokens);
      if (!v.ok()) return ReplyError(core, v.status(), res);
      vectors.push_back(*std::move(v));
      n_tokens += static_cast<int64_t>(tokens.size());
    }
    core->metrics().CountTokens(n_tokens, 0);
    ReplyJson(res, 200,
              EmbeddingsBody(r->model.empty() ? core->model_id() : r->model, vectors, n_tokens,
                             r->base64));
  });

  // Run-time adapters: GET lists, POST {"name", "path"} loads, DELETE /v1/adapters/NAME unloads.
  svr.Get("/v1/adapters", [core](const httplib::Request&, httplib::Response& res) {
    if (absl::Status s = core->CheckServing(); !s.ok()) return ReplyError(core, s, res);
    std::string body = "{\"object\":\"list\",\"data\":[";
    const std::vector<std::string> names = core->engine().Adapters();
    for (size_t i = 0; i < names.size(); ++i) {
      absl::StrAppend(&body, i ? "," : "", "{\"name\":\"", names[i], "\",\"model\":\"",
                      core->model_id(), "+", names[i], "\"}");
    }
    ReplyJson(res, 200, body + "]}");
  });
  svr.Post("/v1/adapters", [core](const httplib::Request& req, httplib::Response& res) {
    if (absl::Status s = core->CheckServing(); !s.ok()) return ReplyError(core, s, res);
    absl::StatusOr<AdapterRequest> r = ParseAdapterRequest(req.body);
    if (!r.ok()) return ReplyError(core, r.status(), res);
    if (absl::Status s = core->engine().LoadAdapter(r->name, r->path); !s.ok()) {
      return ReplyError(core, s, res);
    }
    ReplyJson(res, 200, absl::StrCat("{\"name\":\"", r->name, "\",\"model\":\"", core->model_id(),
                                     "+", r->name, "\"}"));
  });
  svr.Delete(R"(/v1/adapters/([A-Za-z0-9_.\-]+))",
             [core](const httplib::Request& req, httplib::Response& res) {
               if (absl::Status s = core->CheckServing(); !s.ok()) {
                 return ReplyError(core, s, res);
               }
               if (absl::Status s = core->engine().UnloadAdapter(req.matches[1]); !s.ok()) {
                 return ReplyError(core, s, res);
               }
               ReplyJson(res, 200, absl::StrCat("{\"name\":\"", std::string(req.matches[1]),
                                                "\",\"deleted\":true}"));
             });
}

}  // namespace anvil::server
