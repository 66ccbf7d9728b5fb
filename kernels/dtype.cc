// Block sizes and names of the kernel element types.
#include "kernels/dtype.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace anvil {

int64_t BlockElems(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return 1;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
      return kQK;
  }
  return 1;
}

int64_t BlockBytes(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kQ8_0:
      return sizeof(BlockQ8_0);
    case DType::kQ4_0:
      return sizeof(BlockQ4_0);
    case DType::kQ4_1:
      return sizeof(BlockQ4_1);
  }
  return 0;
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ4_1:
      return "Q4_1";
  }
  return "?";
}

absl::StatusOr<int64_t> RowBytes(DType t, int64_t n) {
  const int64_t be = BlockElems(t);
  if (n < 0 || n % be != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("row of ", n, " elements is not a whole number of ", DTypeName(t),
                     " blocks (", be, " elements each)"));
  }
  const int64_t blocks = n / be;
  if (blocks > std::numeric_limits<int64_t>::max() / BlockBytes(t)) {
    return absl::InvalidArgumentError(absl::StrCat("row of ", n, " ", DTypeName(t), " overflows"));
  }
  return blocks * BlockBytes(t);
}

}  // namespace anvil
