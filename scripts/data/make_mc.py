#!/usr/bin/env python3
"""Writes a seeded multiple-choice arithmetic task: "What is 17 + 25?" with four choices.

Each record is {"id", "question", "choices", "answer"} where answer is the index of the correct
choice; the three distractors are near misses (off by one, off by ten, a swapped digit or the
other operation's result), and the position of the correct choice is drawn uniformly. The output
depends only on the arguments (own PRNG, no hash ordering). Python 3 standard library only.

Usage: make_mc.py --out DIR [--seed N] [--test N] [--train N]
Writes DIR/arith_test.jsonl and DIR/arith_train.jsonl (a few-shot pool).
"""

import argparse
import json
import os
import sys


class SplitMix64:
    """Small PRNG whose sequence is fixed by the seed on every platform and Python version."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n


def make_record(rng, idx, prefix):
    op = "+*"[rng.below(2)]
    if op == "+":
        a, b = 2 + rng.below(48), 2 + rng.below(48)
        right, other = a + b, a * b
    else:
        a, b = 2 + rng.below(11), 2 + rng.below(11)
        right, other = a * b, a + b
    candidates = [right + 1, right - 1, right + 10, right - 10, other]
    swapped = int(str(right)[::-1])
    if swapped != right:
        candidates.append(swapped)
    distractors = []
    while len(distractors) < 3:
        c = candidates[rng.below(len(candidates))]
        if c > 0 and c != right and c not in distractors:
            distractors.append(c)
    pos = rng.below(4)
    choices = distractors[:pos] + [right] + distractors[pos:]
    return {"id": f"{prefix}{idx:04d}", "question": f"{a} {op} {b}",
            "choices": [str(c) for c in choices], "answer": pos}


def write(path, records):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--train", type=int, default=200)
    args = p.parse_args()
    if args.test < 1 or args.train < 0:
        sys.exit("make_mc.py: --test must be >= 1 and --train >= 0")
    os.makedirs(args.out, exist_ok=True)
    rng = SplitMix64(args.seed)
    test = [make_record(rng, i, "test-") for i in range(args.test)]
    seen = {r["question"] for r in test}
    train = []
    while len(train) < args.train:
        r = make_record(rng, len(train), "train-")
        if r["question"] not in seen:
            train.append(r)
    write(os.path.join(args.out, "arith_test.jsonl"), test)
    write(os.path.join(args.out, "arith_train.jsonl"), train)
    print(f"wrote {len(test)} test and {len(train)} train records to {args.out}")


if __name__ == "__main__":
    main()
