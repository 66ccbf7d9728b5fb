#!/usr/bin/env python3
"""Oracle for eval/'s text metrics: writes tests/fixtures/eval/text_metrics.json.

For each hand-written (prediction, reference) pair it records what the reference packages compute:
ROUGE-L precision/recall/F (rouge-score, RougeScorer(['rougeL'], use_stemmer=False)), sentence
chrF (sacrebleu.sentence_chrf, defaults), sentence BLEU (sacrebleu.sentence_bleu, defaults, plus
the floor / add-k / none smoothings), and SQuAD exact match and token F1 (the official
evaluate-v2.0.py functions, restated below since that script is not a package). Over all pairs it
records sacrebleu.corpus_bleu and corpus_chrf, and a few multi-reference cases.

Run through metrics_golden.sh (pinned versions in a venv); never edit the fixture by hand.
"""
import argparse
import collections
import json
import re
import string
import sys

import sacrebleu
from rouge_score import rouge_scorer
import importlib.metadata as md

# (prediction, reference). Hand-written to cover the tokenizers' corners; order is stable (the
# C++ test reports failures by index).
PAIRS = [
    # identical / near-identical
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("the cat sat on the mat", "The cat sat on the mat."),
    ("A quick brown fox jumps over the lazy dog", "The quick brown fox jumped over the lazy dog"),
    ("Paris", "Paris"),
    ("paris", "Paris"),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    # empty sides
    ("", "The cat sat on the mat."),
    ("The cat sat on the mat.", ""),
    ("", ""),
    ("   ", "   "),
    ("\t\n", "cat"),
    # unicode: accents, CJK, emoji, other scripts, special lowercase
    ("café au lait", "cafe au lait"),
    ("Crème brûlée à la française", "Crème brûlée à la française"),
    ("naïve résumé", "naive resume"),
    ("東京は日本の首都です。", "東京は日本の首都です。"),
    ("東京は日本の首都です", "日本の首都は東京です。"),
    ("我爱北京天安门", "我爱北京"),
    ("I love pizza 🍕🍕", "I love pizza 🍕"),
    ("👍", "👍"),
    ("🎉 party time 🎉", "party time"),
    ("Привет, мир!", "привет мир"),
    ("İstanbul is big", "istanbul is big"),
    ("5 \u212a run", "5 k run"),
    ("ÉCOLE normale", "école normale"),
    ("straße", "STRASSE"),
    ("x\u00a0y z", "x y\u3000z"),
    # punctuation only / heavy punctuation
    ("...", "..."),
    ("!!!", "???"),
    ("?", "."),
    ("Hello, world!", "Hello world"),
    ("Wait... what?!", "Wait, what?"),
    ("(a) [b] {c}", "a b c"),
    ("it's John's book", "it is Johns book"),
    ("e-mail me at foo@bar.com", "email me at foo @ bar . com"),
    ("A&amp;B &lt;tag&gt; &quot;q&quot;", "A&B <tag> \"q\""),
    ("state-of-the-art", "state of the art"),
    ("<skipped> the end", "the end"),
    # numbers
    ("3.14159", "3.14159"),
    ("1,000,000 people", "1000000 people"),
    ("The answer is 42.", "42"),
    ("In 1999-2000, sales rose 5.5%.", "In 1999 - 2000 , sales rose 5.5 % ."),
    ("12 + 7 = 19", "12+7=19"),
    ("version 2.4.3", "version 2.4.3."),
    ("$3.50, or 3,50 EUR", "3.50 dollars"),
    # long sentences
    ("The committee, after a lengthy deliberation that stretched well into the night, finally "
     "agreed that the proposal should be adopted with minor amendments to its third section.",
     "After deliberating late into the night, the committee agreed to adopt the proposal, with "
     "small amendments to the third section."),
    ("In machine learning, a transformer is a deep learning architecture that relies on the "
     "attention mechanism, and it has been widely adopted for training large language models on "
     "large datasets.",
     "A transformer is a deep learning architecture based on multi-head attention; transformers "
     "are widely used to train large language models."),
    ("Photosynthesis converts light energy into chemical energy stored in glucose, releasing "
     "oxygen as a by-product; it takes place mainly in the chloroplasts of plant cells.",
     "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to "
     "create oxygen and energy in the form of sugar."),
    ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
     "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"),
    # JSON answers
    ('{"name": "Alice", "age": 30}', '{"age":30,"name":"Alice"}'),
    ('{"a": [1, 2, 3]}', '{"a":[1,2,3]}'),
    ('{"answer": "yes"}', '{"answer": "no"}'),
    ('[{"id": 1}, {"id": 2}]', '[{"id": 2}, {"id": 1}]'),
    ('{"key": "value"', '{"key": "value"}'),
    # repeated words
    ("the the the the the the the", "the cat is on the mat"),
    ("cat cat cat", "cat"),
    ("cat", "cat cat cat"),
    ("yes yes no no yes", "yes no yes no yes"),
    ("a a a a a a a a a a", "a a a a a"),
    ("buffalo buffalo Buffalo buffalo buffalo buffalo Buffalo buffalo",
     "Buffalo buffalo buffalo"),
    # short / single tokens / partial overlap / order
    ("a", "a"),
    ("an apple", "the apple"),
    ("dog", "cat"),
    ("b a", "a b"),
    ("abcdef", "abcdefg"),
    ("abc", "abd"),
    ("Yes.", "yes"),
    ("No, it is not.", "no"),
    ("the Eiffel Tower", "Eiffel Tower"),
    ("New York City", "new york"),
    ("It was built in 1889 for the World's Fair.", "1889"),
    ("multi\nline\nanswer", "multi line answer"),
    ("hyphen-\nated word", "hyphenated word"),
    ("trailing spaces   ", "trailing spaces"),
    ("under_score snake_case", "under score snake case"),
    ("the—end", "end"),
    ("tab\tseparated\tvalues", "tab separated values"),
]

# (prediction, [references]) for the multi-reference paths of BLEU and chrF.
MULTI_REF = [
    ("The cat is on the mat.", ["There is a cat on the mat.", "A cat is on the mat."]),
    ("It is raining today", ["Today it rains", "It rains today", "It is raining"]),
    ("hello", ["goodbye", "hello there", ""]),
    ("a b c d", ["a b", "a b c d e f"]),
]


# --- SQuAD v2.0 official evaluation (evaluate-v2.0.py), restated -----------------------------
def squad_normalize_answer(s):
    def remove_articles(text):
        regex = re.compile(r'\b(a|an|the)\b', re.UNICODE)
        return re.sub(regex, ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()
    return white_space_fix(remove_articles(remove_punc(lower(s))))


def squad_get_tokens(s):
    if not s:
        return []
    return squad_normalize_answer(s).split()


def squad_compute_exact(a_gold, a_pred):
    return int(squad_normalize_answer(a_gold) == squad_normalize_answer(a_pred))


def squad_compute_f1(a_gold, a_pred):
    gold_toks = squad_get_tokens(a_gold)
    pred_toks = squad_get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)
# ---------------------------------------------------------------------------------------------


def bleu_dict(score):
    return {"score": score.score, "counts": list(score.counts), "totals": list(score.totals),
            "precisions": list(score.precisions), "bp": score.bp, "sys_len": score.sys_len,
            "ref_len": score.ref_len}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="path of text_metrics.json")
    args = ap.parse_args()

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = []
    for i, (pred, ref) in enumerate(PAIRS):
        r = scorer.score(ref, pred)["rougeL"]
        pairs.append({
            "index": i,
            "prediction": pred,
            "reference": ref,
            "rougeL": {"precision": r.precision, "recall": r.recall, "fmeasure": r.fmeasure},
            "chrf": sacrebleu.sentence_chrf(pred, [ref]).score,
            "sentence_bleu": bleu_dict(sacrebleu.sentence_bleu(pred, [ref])),
            "sentence_bleu_floor": sacrebleu.sentence_bleu(pred, [ref], smooth_method="floor").score,
            "sentence_bleu_add_k": sacrebleu.sentence_bleu(pred, [ref], smooth_method="add-k").score,
            "sentence_bleu_none": sacrebleu.sentence_bleu(pred, [ref], smooth_method="none").score,
            "squad_exact": squad_compute_exact(ref, pred),
            "squad_f1": float(squad_compute_f1(ref, pred)),
        })
    preds = [p for p, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    multi = []
    for pred, rs in MULTI_REF:
        multi.append({
            "prediction": pred,
            "references": rs,
            "chrf": sacrebleu.sentence_chrf(pred, rs).score,
            "sentence_bleu": bleu_dict(sacrebleu.sentence_bleu(pred, rs)),
        })
    # corpus_bleu takes reference streams: refs[k][i] is the k-th reference of segment i.
    out = {
        "generator": "scripts/reference/metrics_golden.py",
        "versions": {"python": sys.version.split()[0], "sacrebleu": md.version("sacrebleu"),
                     "rouge-score": md.version("rouge-score")},
        "pairs": pairs,
        "corpus_bleu": bleu_dict(sacrebleu.corpus_bleu(preds, [refs])),
        "corpus_chrf": sacrebleu.corpus_chrf(preds, [refs]).score,
        "multi_reference": multi,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(pairs)} pairs, {len(multi)} multi-reference cases",
          file=sys.stderr)


if __name__ == "__main__":
    main()
