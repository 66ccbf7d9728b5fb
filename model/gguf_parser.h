// Internal to model/gguf*.cc: the defensive byte-level GGUF parser that fills a GgufFile from
// its mapped bytes. Mapping, lookups and getters live in gguf.cc.
#ifndef ANVIL_MODEL_GGUF_PARSER_H_
#define ANVIL_MODEL_GGUF_PARSER_H_

#include "absl/status/status.h"
#include "model/gguf.h"

namespace anvil::gguf {

class GgufParser {
 public:
  // `file.name_`, `file.base_` and `file.size_` must be set; fills everything else. Every
  // malformed input gives InvalidArgument "<name>: <field> at byte <offset>: <problem>".
  static absl::Status Parse(GgufFile& file, const ReadLimits& limits);
};

}  // namespace anvil::gguf

#endif  // ANVIL_MODEL_GGUF_PARSER_H_
