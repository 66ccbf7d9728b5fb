// GlooCollective: a full mesh over Gloo TCP and its ring allreduce. Gloo throws (IoException for
// timeouts and closed peers, EnforceNotMet for misuse); every call here catches everything and
// returns a Status that names host, pid and rank, as a distributed error must.
#include "worker/gloo_collective.h"

#include <gloo/allreduce.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <unistd.h>

#include <exception>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace anvil::worker {
namespace {

std::string Where(const GlooOptions& o) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat("gloo rank ", o.rank, "/", o.world_size, " (", host, " pid ", getpid(),
                      ", listening on ", o.hostname, ")");
}

// Gloo says "Timed out" (transport) or "timeout" (stores) when a peer did not take part in time.
absl::Status FromException(const GlooOptions& o, const std::string& what, const char* message,
                           bool gloo_io) {
  const std::string m(message);
  const std::string lower = absl::AsciiStrToLower(m);
  const bool timeout = absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout");
  const std::string text = absl::StrCat(Where(o), ": ", what, ": ", m);
  if (timeout) {
    return absl::DeadlineExceededError(absl::StrCat(
        text, " (a peer did not take part within ", o.timeout.count(), " ms)"));
  }
  return gloo_io ? absl::UnavailableError(text) : absl::InternalError(text);
}

template <typename F>
absl::Status Guard(const GlooOptions& o, const std::string& what, F&& f) {
  try {
    f();
    return absl::OkStatus();
  } catch (const gloo::IoException& e) {
    return FromException(o, what, e.what(), /*gloo_io=*/true);
  } catch (const std::exception& e) {
    return FromException(o, what, e.what(), /*gloo_io=*/false);
  } catch (...) {
    return absl::InternalError(absl::StrCat(Where(o), ": ", what, ": unknown exception"));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCollective>> GlooCollective::Connect(
    const GlooOptions& options, gloo::rendezvous::Store& store) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("gloo: rank ", options.rank, " is not in [0, ",
                                                   options.world_size, ")"));
  }
  if (options.timeout.count() <= 0) {
    return absl::InvalidArgumentError("gloo: the timeout must be positive");
  }
  // One rank needs no transport.
  if (options.world_size == 1) {
    return std::unique_ptr<GlooCollective>(new GlooCollective(options, nullptr));
  }
  std::shared_ptr<gloo::rendezvous::Context> context;
  absl::Status s = Guard(options, "connecting the full mesh", [&] {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    context = std::make_shared<gloo::rendezvous::Context>(options.rank, options.world_size);
    // The rendezvous waits on the store for each peer's address up to this timeout.
    context->setTimeout(options.timeout);
    context->connectFullMesh(store, device);
  });
  if (!s.ok()) return s;
  return std::unique_ptr<GlooCollective>(new GlooCollective(options, std::move(context)));
}

GlooCollective::GlooCollective(const GlooOptions& options, std::shared_ptr<gloo::Context> context)
    : options_(options), context_(std::move(context)) {}

GlooCollective::~GlooCollective() = default;

template <typename T>
absl::Status GlooCollective::Sum(T* data, size_t n) {
  if (!broken_.ok()) return broken_;
  if (context_ == nullptr || n == 0) return absl::OkStatus();
  const uint32_t tag = next_tag_++;
  broken_ = Guard(options_, absl::StrCat("allreduce of ", n, " values (call ", tag, ")"), [&] {
    gloo::AllreduceOptions opts(context_);
    opts.setOutput(data, n);  // in place: the output is the input
    opts.setReduceFunction(
        static_cast<void (*)(void*, const void*, const void*, size_t)>(&gloo::sum<T>));
    // Every rank calls in the same order, so the call number is a tag that also catches a
    // rank that skipped a call (its peers time out instead of mixing two calls' data).
    opts.setTag(tag);
    opts.setTimeout(options_.timeout);
    gloo::allreduce(opts);
  });
  return broken_;
}

absl::Status GlooCollective::AllreduceSum(float* data, size_t n) { return Sum(data, n); }
absl::Status GlooCollective::AllreduceSum(double* data, size_t n) { return Sum(data, n); }

}  // namespace anvil::worker
