// Chat-template detection and rendering. Each expected string is what the quoted reference
// Jinja template renders (HF settings: trim_blocks, lstrip_blocks), worked out by hand.
#include "model/chat_template.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Msgs = std::vector<ChatMessage>;

// SmolLM2-Instruct's tokenizer.chat_template (notes §3.6); the newlines are real.
constexpr char kSmolLM2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";
constexpr char kSmolLM2System[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

// Qwen2-style: the default system prompt sits in an else-branch, written with a "\n" escape.
constexpr char kQwenLike[] =
    R"({%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }})"
    R"({%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }})"
    R"({%- endif %}{%- for message in messages %}...{%- endfor %})";

// meta-llama/Meta-Llama-3-8B-Instruct
constexpr char kLlama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

// meta-llama/Llama-2-7b-chat-hf
constexpr char kLlama2[] =
    R"({% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %})";

// mistralai/Mistral-7B-Instruct-v0.1 (v0.2 and Mixtral drop the + ' ' after eos_token).
constexpr char kMistralV01[] =
    R"({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})";
constexpr char kMistralV02[] =
    R"({{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %})";

// HuggingFaceH4/zephyr-7b-beta; the newlines between tags are real and trim_blocks eats
// only those that follow a {% %} tag.
constexpr char kZephyr[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
    "'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
    "'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}";

// google/gemma-7b-it
constexpr char kGemma[] =
    R"({{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %})";

// google/gemma-3-4b-it: the system message becomes a prefix of the first user turn.
constexpr char kGemma3[] = R"({{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
)";

// microsoft/Phi-3-mini-4k-instruct
constexpr char kPhi3[] =
    R"({% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %})";

ChatTemplate MustParse(std::string_view src, std::string bos = "", std::string eos = "") {
  auto t = ChatTemplate::FromJinja(src, std::move(bos), std::move(eos));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : ChatTemplate::ForFamily(ChatFamily::kChatML);
}

std::string MustRender(const ChatTemplate& t, const Msgs& m, bool add_generation_prompt) {
  auto s = t.Render(m, add_generation_prompt);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : "";
}

TEST(ChatMLTest, SmolLM2InjectsItsDefaultSystemPrompt) {
  const ChatTemplate t = MustParse(kSmolLM2, "<|im_start|>", "<|im_end|>");
  EXPECT_EQ(t.family(), ChatFamily::kChatML);
  EXPECT_EQ(t.default_system_prompt(), kSmolLM2System);
  EXPECT_EQ(MustRender(t, {{"user", "Hi"}}, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(MustRender(t, {{"system", "Be brief."}, {"user", "Hi"}}, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(MustRender(t, {{"user", "a"}, {"assistant", " b "}, {"user", "c"}}, false),
            std::string("<|im_start|>system\n") + kSmolLM2System +
                "<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n b "
                "<|im_end|>\n<|im_start|>user\nc<|im_end|>\n");
  // The injection sits inside the loop: no messages, no system prompt.
  EXPECT_EQ(MustRender(t, {}, true), "<|im_start|>assistant\n");
  EXPECT_THAT(t.StopStrings(), ElementsAre("<|im_end|>"));
}

TEST(ChatMLTest, DefaultSystemPromptFromEscapedLiteralAndPlainChatML) {
  EXPECT_EQ(MustParse(kQwenLike).default_system_prompt(),
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  const ChatTemplate plain = MustParse(
      R"({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})");
  EXPECT_EQ(plain.default_system_prompt(), "");
  EXPECT_EQ(MustRender(plain, {{"user", "Hi"}}, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // An empty template falls back to ChatML, as llama.cpp does.
  EXPECT_EQ(MustParse("").family(), ChatFamily::kChatML);
}

TEST(Llama3Test, BosFirstContentTrimmed) {
  const ChatTemplate t = MustParse(kLlama3, "<|begin_of_text|>", "<|end_of_text|>");
  EXPECT_EQ(t.family(), ChatFamily::kLlama3);
  EXPECT_EQ(MustRender(t, {{"system", "  Be brief.\n"}, {"user", "\xC2\xA0Hi\xE3\x80\x80"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_THAT(t.StopStrings(), ElementsAre("<|eot_id|>"));
  EXPECT_THAT(ChatTemplate::FromJinja(std::string(kLlama3) + "Cutting Knowledge Date", "", ""),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(Llama2Test, SystemFoldsIntoFirstTurn) {
  const ChatTemplate t = MustParse(kLlama2, "<s>", "</s>");
  EXPECT_EQ(t.family(), ChatFamily::kLlama2);
  EXPECT_EQ(MustRender(t,
                       {{"system", "sys"}, {"user", "user"}, {"assistant", "assistant"},
                        {"user", " next "}},
                       true),
            "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] assistant </s><s>[INST] next [/INST]");
  EXPECT_EQ(MustRender(t, {{"user", "hi"}}, false), "<s>[INST] hi [/INST]");
  EXPECT_THAT(t.Render({{"user", "a"}, {"user", "b"}}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alternate")));
  EXPECT_THAT(t.Render({{"user", "a"}, {"system", "b"}}, true),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(t.StopStrings(), ElementsAre("</s>"));
}

TEST(MistralTest, V01AndV02DifferInTheSpaceAfterEos) {
  const Msgs chat = {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "More"}};
  const ChatTemplate v1 = MustParse(kMistralV01, "<s>", "</s>");
  const ChatTemplate v2 = MustParse(kMistralV02, "<s>", "</s>");
  EXPECT_EQ(v1.family(), ChatFamily::kMistral);
  EXPECT_EQ(MustRender(v1, chat, true), "<s>[INST] Hi [/INST]Hello</s> [INST] More [/INST]");
  EXPECT_EQ(MustRender(v2, chat, true), "<s>[INST] Hi [/INST]Hello</s>[INST] More [/INST]");
  EXPECT_THAT(v2.Render({{"system", "s"}, {"user", "u"}}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("system")));
  EXPECT_THAT(ChatTemplate::FromJinja("[SYSTEM_PROMPT] [INST]", "", ""),
              StatusIs(absl::StatusCode::kUnimplemented));
}

TEST(ZephyrTest, EveryTurnEndsWithEosAndNewline) {
  const ChatTemplate t = MustParse(kZephyr, "<s>", "</s>");
  EXPECT_EQ(t.family(), ChatFamily::kZephyr);
  EXPECT_EQ(MustRender(t, {{"system", "S"}, {"user", "U"}}, true),
            "<|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n");
  EXPECT_EQ(MustRender(t, {}, true), "");
  EXPECT_THAT(t.StopStrings(), ElementsAre("</s>"));
}

TEST(GemmaTest, ModelRoleTrimmedContentAndNoSystem) {
  const ChatTemplate t = MustParse(kGemma, "<bos>", "<eos>");
  EXPECT_EQ(t.family(), ChatFamily::kGemma);
  EXPECT_EQ(MustRender(t, {{"user", " Hi "}, {"assistant", "Hello"}}, true),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n"
            "<start_of_turn>model\n");
  EXPECT_THAT(t.Render({{"system", "S"}, {"user", "U"}}, true),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(t.StopStrings(), ElementsAre("<end_of_turn>"));

  const ChatTemplate g3 = MustParse(kGemma3, "<bos>", "<eos>");
  EXPECT_EQ(MustRender(g3, {{"system", "S "}, {"user", "U"}}, true),
            "<bos><start_of_turn>user\nS \n\nU<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(MustRender(g3, {{"user", " U "}, {"assistant", "A"}}, false),
            "<bos><start_of_turn>user\nU<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n");
}

TEST(Phi3Test, EosWithoutGenerationPrompt) {
  const ChatTemplate t = MustParse(kPhi3, "<s>", "<|endoftext|>");
  EXPECT_EQ(t.family(), ChatFamily::kPhi3);
  EXPECT_EQ(MustRender(t, {{"system", "S"}, {"user", "U"}}, true),
            "<|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\n");
  EXPECT_EQ(MustRender(t, {{"user", "U"}, {"assistant", "A"}}, false),
            "<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n<|endoftext|>");
  EXPECT_THAT(t.StopStrings(), ElementsAre("<|end|>"));
}

TEST(ChatTemplateTest, RejectsUnknownTemplatesAndRoles) {
  EXPECT_THAT(ChatTemplate::FromJinja("foo {{ bar }}", "", ""),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("foo {{ bar }}")));
  EXPECT_THAT(ChatTemplate::FromJinja("<|im_start|>x<|im_sep|>", "", ""),
              StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(ChatTemplate::ForFamily(ChatFamily::kChatML).Render({{"tool", "x"}}, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tool")));
}

TEST(ChatTemplateTest, SmolLM2FileTemplateIsTheNotesTemplate) {
  const std::string path = testing::Q41ModelPath();
  if (!std::ifstream(path).good()) GTEST_SKIP() << "model not found: " << path;
  auto file = gguf::GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  auto src = (*file)->GetString("tokenizer.chat_template");
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(*src, kSmolLM2);
  const ChatTemplate t = MustParse(*src, "<|im_start|>", "<|im_end|>");
  EXPECT_EQ(t.default_system_prompt(), kSmolLM2System);
}

}  // namespace
}  // namespace anvil
