// Chat templates: recognizes the family of a model's tokenizer.chat_template (ChatML, Llama-3,
// Llama-2, Zephyr, Mistral, ...) and renders conversations exactly as the Jinja template would,
// including a family's default system prompt (SmolLM2's). Shared by training, evaluation and
// serving so that all three see the same bytes.
#ifndef ANVIL_MODEL_CHAT_TEMPLATE_H_
#define ANVIL_MODEL_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace anvil {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFamily { kChatML, kLlama3, kLlama2, kZephyr, kMistral, kGemma, kPhi3 };
const char* ChatFamilyName(ChatFamily f);

class ChatTemplate {
 public:
  // Detects the family from the Jinja source. `bos`/`eos` are the texts of the model's BOS/EOS
  // tokens (some templates print them). Unimplemented (quoting the start of the template) when
  // the family is not recognized; an empty template falls back to ChatML, as llama.cpp does.
  static absl::StatusOr<ChatTemplate> FromJinja(std::string_view source, std::string bos,
                                                std::string eos);
  static ChatTemplate ForFamily(ChatFamily family, std::string bos = "", std::string eos = "");

  ChatFamily family() const { return family_; }
  // InvalidArgument for an unknown role or a conversation the family cannot express
  // (e.g. Llama-2/Mistral require alternating user/assistant turns).
  absl::StatusOr<std::string> Render(absl::Span<const ChatMessage> messages,
                                     bool add_generation_prompt) const;
  // Strings that end an assistant turn in this family (e.g. "<|im_end|>"): generation stops on them.
  std::vector<std::string> StopStrings() const;
  // The system prompt injected when a conversation has none ("" when the family has none).
  const std::string& default_system_prompt() const { return default_system_; }

 private:
  ChatFamily family_ = ChatFamily::kChatML;
  std::string bos_, eos_;
  std::string default_system_;
  // Variants inside a family, found in the Jinja source.
  bool eos_then_space_ = false;     // Mistral v0.1: assistant turns end with eos + ' '
  bool system_as_prefix_ = false;   // Gemma 3: the system text + "\n\n" opens the first turn
};

}  // namespace anvil

#endif  // ANVIL_MODEL_CHAT_TEMPLATE_H_
