// sacrebleu's default BLEU tokenizer "13a" (mteval-v13a.pl as sacrebleu 2.4.3 implements it).
// BLEU itself is in bleu.h.
#ifndef ANVIL_EVAL_TOKENIZER_13A_H_
#define ANVIL_EVAL_TOKENIZER_13A_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace anvil::eval {

// The tokens of `line` after, in order: Python rstrip(); removing "<skipped>" and "-\n"; "\n" to
// a space; the entities &quot; &amp; &lt; &gt; unescaped (one after the other, so "&amp;lt;"
// becomes "<"); spaces around ASCII punctuation other than ' - . ,; spaces around '.' and ','
// except between digits; a space after '-' that follows a digit; split on (Python) whitespace.
std::vector<std::string> Tokenize13a(absl::string_view line);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_TOKENIZER_13A_H_
