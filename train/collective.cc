// AllgatherBytes over AllreduceSum (see collective.h).
#include "train/collective.h"

#include "absl/strings/str_cat.h"

namespace anvil::train {

absl::StatusOr<std::vector<std::string>> AllgatherBytes(Collective& c, const std::string& mine) {
  const int world = c.world_size();
  constexpr double kMaxTotal = 256.0 * (1 << 20);
  std::vector<double> sizes(static_cast<size_t>(world), 0.0);  // [world]
  sizes[static_cast<size_t>(c.rank())] = static_cast<double>(mine.size());
  if (absl::Status s = c.AllreduceSum(sizes.data(), sizes.size()); !s.ok()) return s;
  double total = 0;
  for (double v : sizes) total += v;
  if (total > kMaxTotal) {
    return absl::InvalidArgumentError(
        absl::StrCat("allgather of ", total, " bytes is over the 256 MiB limit"));
  }
  std::vector<size_t> offset(static_cast<size_t>(world) + 1, 0);
  for (int r = 0; r < world; ++r) offset[r + 1] = offset[r] + static_cast<size_t>(sizes[r]);
  std::vector<float> buf(offset.back(), 0.0f);  // [total bytes]
  const size_t base = offset[static_cast<size_t>(c.rank())];
  for (size_t i = 0; i < mine.size(); ++i) {
    buf[base + i] = static_cast<float>(static_cast<unsigned char>(mine[i]));
  }
  if (!buf.empty()) {
    if (absl::Status s = c.AllreduceSum(buf.data(), buf.size()); !s.ok()) return s;
  }
  std::vector<std::string> out(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    std::string& o = out[static_cast<size_t>(r)];
    o.resize(offset[r + 1] - offset[r]);
    for (size_t i = 0; i < o.size(); ++i) {
      o[i] = static_cast<char>(static_cast<unsigned char>(buf[offset[r] + i]));
    }
  }
  return out;
}

}  // namespace anvil::train
