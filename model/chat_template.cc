// Chat-template families: detection by substrings of the Jinja source (in the spirit of
// llama.cpp's llm_chat_detect_template), and rendering that reproduces, byte for byte, what
// the family's reference Jinja template renders under HF's settings (trim_blocks,
// lstrip_blocks). Templates we cannot reproduce exactly are refused with Unimplemented.
#include "model/chat_template.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace anvil {
namespace {

bool Contains(std::string_view s, std::string_view sub) {
  return s.find(sub) != std::string_view::npos;
}

// Length of the Python-whitespace character (str.isspace) at s[i], or 0. Jinja's `trim`
// filter and `.strip()` both use Python's str.strip().
size_t PySpaceAt(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
  auto at = [&](std::string_view seq) { return s.substr(i, seq.size()) == seq; };
  if (at("\xC2\x85") || at("\xC2\xA0")) return 2;
  if (at("\xE1\x9A\x80") || at("\xE2\x80\xA8") || at("\xE2\x80\xA9") || at("\xE2\x80\xAF") ||
      at("\xE2\x81\x9F") || at("\xE3\x80\x80")) {
    return 3;
  }
  if (s.size() - i >= 3 && at("\xE2\x80") && static_cast<unsigned char>(s[i + 2]) >= 0x80 &&
      static_cast<unsigned char>(s[i + 2]) <= 0x8A) {
    return 3;  // U+2000..U+200A
  }
  return 0;
}

std::string PyStrip(std::string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    const size_t n = PySpaceAt(s, b);
    if (n == 0) break;
    b += n;
  }
  size_t e = s.size();
  while (e > b) {
    // Step back to the start of the last UTF-8 character.
    size_t start = e - 1;
    while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    if (PySpaceAt(s, start) != e - start) break;
    e = start;
  }
  return std::string(s.substr(b, e - b));
}

// The text of a constant Jinja string literal that continues at `i` up to "<|im_end|>",
// unescaping \n, \t, \\, \' and \". Empty if the literal ends (a quote) or an expression
// starts before "<|im_end|>".
std::string LiteralUntilImEnd(std::string_view src, size_t i) {
  std::string out;
  while (i < src.size()) {
    if (src.substr(i, 10) == "<|im_end|>") return out;
    const char c = src[i];
    if (c == '\'' || c == '"' || c == '{' || c == '}') return "";
    if (c == '\\' && i + 1 < src.size()) {
      const char e = src[i + 1];
      out.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
      i += 2;
      continue;
    }
    out.push_back(c);
    ++i;
  }
  return "";
}

// The default system prompt of a ChatML template: a constant literal
// '<|im_start|>system\n...<|im_end|>\n' rendered when the conversation has no system message
// (SmolLM2 inside `{% if loop.first and messages[0]['role'] != 'system' %}`, Qwen2 in the
// else-branch of `messages[0]['role'] == 'system'`).
std::string ChatMLDefaultSystem(std::string_view src) {
  const std::string_view head = "<|im_start|>system";
  for (size_t at = src.find(head); at != std::string_view::npos; at = src.find(head, at + 1)) {
    size_t i = at + head.size();
    if (src.substr(i, 1) == "\n") {
      i += 1;
    } else if (src.substr(i, 2) == "\\n") {
      i += 2;
    } else {
      continue;
    }
    std::string text = LiteralUntilImEnd(src, i);
    if (!text.empty()) return text;
  }
  return "";
}

absl::Status Unsupported(std::string_view source, std::string_view why) {
  constexpr size_t kQuote = 80;
  return absl::UnimplementedError(absl::StrCat(
      "chat template not supported (", std::string(why), "): \"",
      std::string(source.substr(0, kQuote)),
      source.size() > kQuote ? "...\"" : "\""));
}

// Jinja templates that raise 'Conversation roles must alternate user/assistant/...'.
absl::Status CheckAlternating(absl::Span<const ChatMessage> messages, ChatFamily family) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const bool want_user = i % 2 == 0;
    if ((messages[i].role == "user") != want_user || messages[i].role == "system") {
      return absl::InvalidArgumentError(absl::StrCat(
          ChatFamilyName(family), " chat: message ", i, " has role '", messages[i].role,
          "'; after an optional leading system message the roles must alternate "
          "user/assistant starting with user"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* ChatFamilyName(ChatFamily f) {
  switch (f) {
    case ChatFamily::kChatML: return "chatml";
    case ChatFamily::kLlama3: return "llama3";
    case ChatFamily::kLlama2: return "llama2";
    case ChatFamily::kZephyr: return "zephyr";
    case ChatFamily::kMistral: return "mistral";
    case ChatFamily::kGemma: return "gemma";
    case ChatFamily::kPhi3: return "phi3";
  }
  return "?";
}

ChatTemplate ChatTemplate::ForFamily(ChatFamily family, std::string bos, std::string eos) {
  ChatTemplate t;
  t.family_ = family;
  t.bos_ = std::move(bos);
  t.eos_ = std::move(eos);
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromJinja(std::string_view src, std::string bos,
                                                     std::string eos) {
  ChatTemplate t = ForFamily(ChatFamily::kChatML, std::move(bos), std::move(eos));
  if (src.empty()) return t;  // llama.cpp's fallback
  if (Contains(src, "<|im_start|>")) {
    if (Contains(src, "<|im_sep|>")) return Unsupported(src, "Phi-4 style <|im_sep|>");
    if (Contains(src, "<end_of_utterance>")) return Unsupported(src, "SmolVLM");
    t.default_system_ = ChatMLDefaultSystem(src);
    return t;
  }
  if (src.substr(0, 7) == "mistral" || Contains(src, "[INST]")) {
    if (Contains(src, "<<SYS>>")) {
      t.family_ = ChatFamily::kLlama2;
      return t;
    }
    if (Contains(src, "[SYSTEM_PROMPT]") || Contains(src, "[AVAILABLE_TOOLS]") ||
        Contains(src, "' [INST] ' + system_message")) {
      return Unsupported(src, "Mistral v1/v3/v7 variant");
    }
    t.family_ = ChatFamily::kMistral;
    t.eos_then_space_ = Contains(src, "eos_token + ' '");
    return t;
  }
  if (Contains(src, "<|start_header_id|>") && Contains(src, "<|end_header_id|>")) {
    if (Contains(src, "Cutting Knowledge Date")) {
      return Unsupported(src, "Llama 3.1+ template with dated system prompt and tools");
    }
    t.family_ = ChatFamily::kLlama3;
    return t;
  }
  if (Contains(src, "<|assistant|>") && Contains(src, "<|end|>")) {
    t.family_ = ChatFamily::kPhi3;
    return t;
  }
  if (Contains(src, "<|user|>") && Contains(src, "<|assistant|>")) {
    // Zephyr ends every turn with eos_token; some copies spell it <|endoftext|>.
    if (Contains(src, "eos_token")) {
      t.family_ = ChatFamily::kZephyr;
      return t;
    }
    if (Contains(src, "<|endoftext|>")) {
      t.family_ = ChatFamily::kZephyr;
      t.eos_ = "<|endoftext|>";
      return t;
    }
    return Unsupported(src, "<|user|>/<|assistant|> template without an end-of-turn token");
  }
  if (Contains(src, "<start_of_turn>")) {
    t.family_ = ChatFamily::kGemma;
    t.system_as_prefix_ = Contains(src, "first_user_prefix");
    return t;
  }
  return Unsupported(src, "unknown family");
}

std::vector<std::string> ChatTemplate::StopStrings() const {
  const std::string eos = eos_.empty() ? "</s>" : eos_;
  switch (family_) {
    case ChatFamily::kChatML: return {"<|im_end|>"};
    case ChatFamily::kLlama3: return {"<|eot_id|>"};
    case ChatFamily::kLlama2:
    case ChatFamily::kMistral:
    case ChatFamily::kZephyr: return {eos};
    case ChatFamily::kGemma: return {"<end_of_turn>"};
    case ChatFamily::kPhi3: return {"<|end|>"};
  }
  return {};
}

namespace {

// Llama-2, Mistral and Gemma: an optional leading system message, then strictly alternating
// user/assistant turns. Mistral v0.1/v0.2 and Gemma 1/2 refuse a system message; Gemma 3
// (system_as_prefix) opens the first user turn with it.
absl::StatusOr<std::string> RenderAlternating(ChatFamily family, absl::Span<const ChatMessage> m,
                                              bool add_generation_prompt, const std::string& bos,
                                              const std::string& eos, bool eos_then_space,
                                              bool system_as_prefix) {
  const bool has_system = !m.empty() && m[0].role == "system";
  const bool system_ok =
      family == ChatFamily::kLlama2 || (family == ChatFamily::kGemma && system_as_prefix);
  if (has_system && !system_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(ChatFamilyName(family), " chat template does not support a system message"));
  }
  const auto turns = has_system ? m.subspan(1) : m;
  if (absl::Status s = CheckAlternating(turns, family); !s.ok()) return s;
  const std::string system = has_system ? m[0].content : "";

  std::string out;
  if (family == ChatFamily::kLlama2) {
    for (size_t i = 0; i < turns.size(); ++i) {
      std::string content = turns[i].content;
      if (i == 0 && has_system) {
        content = absl::StrCat("<<SYS>>\n", system, "\n<</SYS>>\n\n", content);
      }
      if (turns[i].role == "user") {
        absl::StrAppend(&out, bos, "[INST] ", PyStrip(content), " [/INST]");
      } else {
        absl::StrAppend(&out, " ", PyStrip(content), " ", eos);
      }
    }
    return out;  // the template ignores add_generation_prompt
  }
  if (family == ChatFamily::kMistral) {
    out = bos;
    for (const ChatMessage& t : turns) {
      if (t.role == "user") {
        absl::StrAppend(&out, "[INST] ", t.content, " [/INST]");
      } else {
        absl::StrAppend(&out, t.content, eos, eos_then_space ? " " : "");
      }
    }
    return out;  // the template ignores add_generation_prompt
  }
  out = bos;  // Gemma
  for (size_t i = 0; i < turns.size(); ++i) {
    absl::StrAppend(&out, "<start_of_turn>", turns[i].role == "user" ? "user" : "model", "\n",
                    i == 0 && has_system ? system + "\n\n" : "", PyStrip(turns[i].content),
                    "<end_of_turn>\n");
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace

absl::StatusOr<std::string> ChatTemplate::Render(absl::Span<const ChatMessage> messages,
                                                 bool add_generation_prompt) const {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("chat message ", i, " has role '", r,
                                                     "'; expected system, user or assistant"));
    }
  }
  std::string out;
  switch (family_) {
    case ChatFamily::kChatML:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0 && messages[0].role != "system" && !default_system_.empty()) {
          absl::StrAppend(&out, "<|im_start|>system\n", default_system_, "<|im_end|>\n");
        }
        absl::StrAppend(&out, "<|im_start|>", messages[i].role, "\n", messages[i].content,
                        "<|im_end|>\n");
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;

    case ChatFamily::kLlama3:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out += bos_;
        absl::StrAppend(&out, "<|start_header_id|>", messages[i].role, "<|end_header_id|>\n\n",
                        PyStrip(messages[i].content), "<|eot_id|>");
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;

    case ChatFamily::kLlama2:
    case ChatFamily::kMistral:
    case ChatFamily::kGemma:
      return RenderAlternating(family_, messages, add_generation_prompt, bos_, eos_,
                               eos_then_space_, system_as_prefix_);

    case ChatFamily::kZephyr:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, eos_, "\n");
      }
      // Inside the loop (`loop.last and add_generation_prompt`): nothing for no messages.
      if (add_generation_prompt && !messages.empty()) out += "<|assistant|>\n";
      return out;

    case ChatFamily::kPhi3:
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, "<|end|>\n");
      }
      out += add_generation_prompt ? "<|assistant|>\n" : eos_;
      return out;
  }
  return absl::InternalError("unknown chat family");
}

}  // namespace anvil
