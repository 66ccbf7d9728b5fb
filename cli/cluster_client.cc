#include "cli/cluster_client.h"

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "rpc/auth.h"
#include "rpc/channel.h"

namespace anvil::cli {

std::string AnvilHome() {
  if (const char* h = std::getenv("ANVIL_HOME"); h != nullptr && *h != '\0') return h;
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr ? home : ".", "/.anvil");
}

std::vector<FlagSpec> ClusterFlags() {
  return {{"coordinator", "ADDR", "",
           "coordinator address (default: $ANVIL_COORDINATOR, then $ANVIL_HOME/address, then "
           "127.0.0.1:7070)"},
          {"token-file", "PATH", "",
           "bearer token file (default: $ANVIL_TOKEN, then $ANVIL_HOME/token)"}};
}

void ClusterConnection::Prepare(grpc::ClientContext* context, int seconds) const {
  rpc::PrepareContext(context, token, std::chrono::seconds(seconds));
}

absl::StatusOr<ClusterConnection> ConnectCluster(const Args& args) {
  ClusterConnection c;
  c.address = args.Get("coordinator");
  if (c.address.empty()) {
    if (const char* a = std::getenv("ANVIL_COORDINATOR"); a != nullptr && *a != '\0') c.address = a;
  }
  if (c.address.empty()) {
    std::ifstream in(AnvilHome() + "/address");
    std::stringstream ss;
    ss << in.rdbuf();
    c.address = std::string(absl::StripAsciiWhitespace(ss.str()));
  }
  if (c.address.empty()) c.address = "127.0.0.1:7070";

  std::string token_file = args.Get("token-file");
  if (token_file.empty()) {
    if (const char* t = std::getenv("ANVIL_TOKEN"); t != nullptr && *t != '\0') c.token = t;
  }
  if (c.token.empty()) {
    if (token_file.empty()) token_file = AnvilHome() + "/token";
    absl::StatusOr<std::string> t = rpc::ReadTokenFile(token_file);
    if (!t.ok()) {
      return absl::Status(t.status().code(),
                          absl::StrCat(t.status().message(),
                                       " (start a cluster with `anvil up`, or pass --token-file)"));
    }
    c.token = *t;
  }
  c.channel = rpc::CreateClusterChannel(c.address);
  return c;
}

}  // namespace anvil::cli
