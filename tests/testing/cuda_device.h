// Shared by the kernels_cuda_* tests (CUDA builds only): one cuda::Context per test binary and
// device uploads. Tests that need a device start with ANVIL_SKIP_WITHOUT_CUDA_DEVICE(), which
// skips with the reason (no driver, no device) on machines without one.
#ifndef ANVIL_TESTS_TESTING_CUDA_DEVICE_H_
#define ANVIL_TESTS_TESTING_CUDA_DEVICE_H_

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
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

// Fixture for tests that need a device: skips without one, and moves vectors to and from it.
class CudaDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ANVIL_SKIP_WITHOUT_CUDA_DEVICE();
    ctx_ = SharedCudaContext();
    ASSERT_NE(ctx_, nullptr) << "cuda::Context::Create failed";
  }
  ExecContext Gpu() const { return {Backend::kCuda, nullptr, ctx_}; }

  // Device copy of `v` (landed when this returns: DeviceBuffer copies synchronize the device).
  template <typename T>
  cuda::DeviceBuffer Up(const std::vector<T>& v) {
    auto b = Upload(v.data(), v.size() * sizeof(T));
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(b).value() : cuda::DeviceBuffer();
  }
  // Waits for the context's stream, then copies `n` elements back.
  template <typename T>
  std::vector<T> Down(const cuda::DeviceBuffer& b, size_t n) {
    const absl::Status s = ctx_->Synchronize();
    EXPECT_TRUE(s.ok()) << s;
    std::vector<T> v(n);
    const absl::Status c = b.CopyToHost(v.data(), n * sizeof(T));
    EXPECT_TRUE(c.ok()) << c;
    return v;
  }

  cuda::Context* ctx_ = nullptr;
};

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_CUDA_DEVICE_H_
