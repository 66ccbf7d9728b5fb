// SHA-256 (FIPS 180-4): an incremental hasher (Update ... Finish) for checksumming large files
// and model artifacts as they are written or mapped, and one-shot hex helpers. Uses the x86 SHA
// extensions when the CPU has them (checked once at run time), else portable scalar code.
#ifndef ANVIL_MODEL_SHA256_H_
#define ANVIL_MODEL_SHA256_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace anvil {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256() { Reset(); }
  // Starts a new message (also done by the constructor and by Finish).
  void Reset();
  // Appends bytes; any split of a message into Update calls gives the same digest.
  void Update(const void* data, size_t n);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  // Pads, returns the digest and resets the hasher for a new message.
  Digest Finish();
  std::string FinishHex();  // lowercase hex, 64 characters

  // True when the x86 SHA-NI path is in use on this machine.
  static bool UsesShaExtensions();

 private:
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;  // bytes pending in buf_ (< 64)
  uint64_t total_ = 0;  // message length in bytes
};

std::string DigestHex(const Sha256::Digest& d);
// One-shot: lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

namespace internal {
// The compression function over `n_blocks` 64-byte blocks; the portable version is always
// available, for tests that compare it with the accelerated one.
void Sha256BlocksScalar(uint32_t state[8], const uint8_t* data, size_t n_blocks);
}  // namespace internal

}  // namespace anvil

#endif  // ANVIL_MODEL_SHA256_H_
