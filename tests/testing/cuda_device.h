// Shared by the kernels_cuda_* tests (CUDA builds only): one cuda::Context per test binary and
// device uploads. Tests that need a device start with ANVIL_SKIP_WITHOUT_CUDA_DEVICE(), which
// skips with the reason (no driver, no device) on machines without one.
#ifndef ANVIL_TESTS_TESTING_CUDA_DEVICE_H_
#define ANVIL_TESTS_TESTING_CUDA_DEVICE_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/context.h"

#define ANVIL_SKIP_WITHOUT_CUDA_DEVICE() \
  if (auto s = ::anvil::cuda::DeviceStatus(); !s.ok()) GTEST_SKIP() << s

namespace anvil::testing {

// One context for the whole binary (creating cuBLAS handles per test is slow), never freed;
// null (with a test failure recorded) when it cannot be created.
inline cuda::Context* SharedCudaContext() {
  static cuda::Context* ctx = [] {
    auto c = cuda::Context::Create();
    if (!c.ok()) ADD_FAILURE() << c.status();
    return c.ok() ? c->release() : nullptr;
  }();
  return ctx;
}

// A device copy of `bytes` host bytes, with 4 spare bytes so that empty tensors still get a
// non-null pointer. The copy has landed when this returns (DeviceBuffer synchronizes).
inline absl::StatusOr<cuda::DeviceBuffer> Upload(const void* src, size_t bytes) {
  ANVIL_ASSIGN_OR_RETURN(auto b, cuda::DeviceBuffer::Allocate(bytes + 4));
  ANVIL_RETURN_IF_ERROR(b.CopyFromHost(src, bytes));
  return b;
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_CUDA_DEVICE_H_
