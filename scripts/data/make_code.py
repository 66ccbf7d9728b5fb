#!/usr/bin/env python3
"""Writes the small Python code-generation task (tasks/code-py.yaml) as JSONL.

Each record: id, prompt (what to write), test (Python asserts run after the answer's code, in the
same namespace) and answer (a reference solution). The problems are a fixed hand-written table;
the script checks every reference solution against its own tests before writing, so the data
cannot ship a broken reference.

  python3 scripts/data/make_code.py --out data/code
"""
import argparse
import json
import os
import subprocess
import sys

# (id, prompt, reference solution, test)
PROBLEMS = [
    ("add", "Write a Python function add(a, b) that returns the sum of a and b.",
     "def add(a, b):\n    return a + b\n",
     "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(0, 0) == 0"),
    ("is_even", "Write a Python function is_even(n) that returns True when the integer n is even.",
     "def is_even(n):\n    return n % 2 == 0\n",
     "assert is_even(4)\nassert not is_even(7)\nassert is_even(0)\nassert is_even(-2)"),
    ("reverse_string", "Write a Python function reverse_string(s) that returns s reversed.",
     "def reverse_string(s):\n    return s[::-1]\n",
     "assert reverse_string('abc') == 'cba'\nassert reverse_string('') == ''"),
    ("max_of_list", "Write a Python function max_of_list(xs) that returns the largest number of a "
     "non-empty list xs.",
     "def max_of_list(xs):\n    return max(xs)\n",
     "assert max_of_list([1, 5, 3]) == 5\nassert max_of_list([-4, -2]) == -2"),
    ("factorial", "Write a Python function factorial(n) that returns n! for an integer n >= 0.",
     "def factorial(n):\n    r = 1\n    for i in range(2, n + 1):\n        r *= i\n    return r\n",
     "assert factorial(0) == 1\nassert factorial(5) == 120\nassert factorial(10) == 3628800"),
    ("count_vowels", "Write a Python function count_vowels(s) that returns how many of the "
     "characters of s are vowels (a, e, i, o, u, either case).",
     "def count_vowels(s):\n    return sum(c in 'aeiouAEIOU' for c in s)\n",
     "assert count_vowels('hello') == 2\nassert count_vowels('AEIOU') == 5\n"
     "assert count_vowels('xyz') == 0"),
    ("fibonacci", "Write a Python function fibonacci(n) that returns the n-th Fibonacci number, "
     "with fibonacci(0) == 0 and fibonacci(1) == 1.",
     "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n"
     "    return a\n",
     "assert fibonacci(0) == 0\nassert fibonacci(1) == 1\nassert fibonacci(10) == 55"),
    ("is_palindrome", "Write a Python function is_palindrome(s) that returns True when the string "
     "s reads the same forwards and backwards.",
     "def is_palindrome(s):\n    return s == s[::-1]\n",
     "assert is_palindrome('racecar')\nassert not is_palindrome('abc')\nassert is_palindrome('')"),
    ("sum_list", "Write a Python function sum_list(xs) that returns the sum of the numbers in the "
     "list xs (0 for an empty list).",
     "def sum_list(xs):\n    return sum(xs)\n",
     "assert sum_list([1, 2, 3]) == 6\nassert sum_list([]) == 0"),
    ("square", "Write a Python function square(x) that returns x squared.",
     "def square(x):\n    return x * x\n",
     "assert square(3) == 9\nassert square(-4) == 16"),
    ("celsius_to_fahrenheit", "Write a Python function celsius_to_fahrenheit(c) that converts "
     "degrees Celsius to degrees Fahrenheit.",
     "def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32\n",
     "assert celsius_to_fahrenheit(0) == 32\nassert celsius_to_fahrenheit(100) == 212"),
    ("count_words", "Write a Python function count_words(s) that returns the number of "
     "whitespace-separated words in s.",
     "def count_words(s):\n    return len(s.split())\n",
     "assert count_words('a b  c') == 3\nassert count_words('') == 0"),
    ("unique_sorted", "Write a Python function unique_sorted(xs) that returns the distinct values "
     "of the list xs in increasing order, as a list.",
     "def unique_sorted(xs):\n    return sorted(set(xs))\n",
     "assert unique_sorted([3, 1, 3, 2]) == [1, 2, 3]\nassert unique_sorted([]) == []"),
    ("gcd", "Write a Python function gcd(a, b) that returns the greatest common divisor of two "
     "positive integers.",
     "def gcd(a, b):\n    while b:\n        a, b = b, a % b\n    return a\n",
     "assert gcd(12, 18) == 6\nassert gcd(7, 5) == 1"),
    ("is_prime", "Write a Python function is_prime(n) that returns True when the integer n is a "
     "prime number.",
     "def is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n"
     "        if n % i == 0:\n            return False\n        i += 1\n    return True\n",
     "assert is_prime(2)\nassert is_prime(13)\nassert not is_prime(1)\nassert not is_prime(15)"),
    ("capitalize_words", "Write a Python function capitalize_words(s) that returns s with the "
     "first letter of every space-separated word in upper case.",
     "def capitalize_words(s):\n    return ' '.join(w[:1].upper() + w[1:] for w in s.split(' '))\n",
     "assert capitalize_words('hello world') == 'Hello World'"),
    ("list_product", "Write a Python function list_product(xs) that returns the product of the "
     "numbers in the list xs (1 for an empty list).",
     "def list_product(xs):\n    r = 1\n    for x in xs:\n        r *= x\n    return r\n",
     "assert list_product([2, 3, 4]) == 24\nassert list_product([]) == 1"),
    ("min_index", "Write a Python function min_index(xs) that returns the index of the smallest "
     "value in the non-empty list xs (the first one on ties).",
     "def min_index(xs):\n    return xs.index(min(xs))\n",
     "assert min_index([3, 1, 2, 1]) == 1\nassert min_index([5]) == 0"),
    ("flatten", "Write a Python function flatten(xss) that turns a list of lists into one list.",
     "def flatten(xss):\n    return [x for xs in xss for x in xs]\n",
     "assert flatten([[1, 2], [], [3]]) == [1, 2, 3]"),
    ("char_count", "Write a Python function char_count(s, c) that returns how many times the "
     "character c occurs in the string s.",
     "def char_count(s, c):\n    return s.count(c)\n",
     "assert char_count('banana', 'a') == 3\nassert char_count('', 'x') == 0"),
]

CHECK = "import runpy, sys; ns = runpy.run_path(sys.argv[1]); exec(sys.argv[2], ns)"


def check_reference(answer, test):
    """Runs the reference through the same check the task file uses; raises if it fails."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "answer.py")
        with open(path, "w") as f:
            f.write(answer)
        p = subprocess.run([sys.executable, "-c", CHECK, path, test], capture_output=True,
                           text=True, timeout=30)
        if p.returncode != 0:
            raise SystemExit(f"reference fails its test:\n{answer}\n{test}\n{p.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "test.jsonl")
    with open(path, "w") as f:
        for pid, prompt, answer, test in PROBLEMS:
            check_reference(answer, test)
            rec = {"id": pid, "prompt": prompt + " Answer with the code only.", "test": test,
                   "answer": answer}
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"wrote {len(PROBLEMS)} records to {path}")


if __name__ == "__main__":
    main()
