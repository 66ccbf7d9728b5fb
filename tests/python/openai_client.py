#!/usr/bin/env python3
"""Drives anvil-server's HTTP API with the official `openai` client (build/openai-venv).

Run by tests/unit/server_openai_client_test.cc against a live server:
  openai_client.py --base-url http://127.0.0.1:PORT/v1 --api-key TOKEN --model ID
Checks, each with an exact expectation:
  - a greedy chat completion has the shape the client parses (role, content, usage);
  - a streamed chat arrives in several chunks whose concatenation equals the whole answer;
  - a greedy text completion equals its streamed version;
  - embeddings (the client's default base64 transfer) are unit vectors of the model's width;
  - a bad request raises BadRequestError (400), an unknown model NotFoundError (404),
    a wrong key AuthenticationError (401).
Prints one line per check and exits non-zero on the first failure.
"""
import argparse
import math
import sys

import openai


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-embd", type=int, default=576)
    a = ap.parse_args()
    client = openai.OpenAI(base_url=a.base_url, api_key=a.api_key, max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    whole = client.chat.completions.create(model=a.model, messages=messages, max_tokens=24,
                                           temperature=0)
    choice = whole.choices[0]
    check(whole.object == "chat.completion", "chat.completion object")
    check(choice.message.role == "assistant", "assistant role")
    check(len(choice.message.content) > 0, f"non-empty answer {choice.message.content!r}")
    check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
    check(whole.usage.completion_tokens > 0 and
          whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens,
          "usage adds up")

    stream = client.chat.completions.create(model=a.model, messages=messages, max_tokens=24,
                                            temperature=0, stream=True)
    pieces, finish, objects = [], None, set()
    for chunk in stream:
        objects.add(chunk.object)
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            pieces.append(delta.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    check(objects == {"chat.completion.chunk"}, f"chunk objects {objects}")
    check(len(pieces) >= 3, f"streamed in {len(pieces)} content chunks")
    check("".join(pieces) == choice.message.content, "stream == whole answer")
    check(finish == choice.finish_reason, f"stream finish_reason {finish}")

    comp = client.completions.create(model=a.model, prompt="The capital of France is",
                                     max_tokens=12, temperature=0)
    scomp = client.completions.create(model=a.model, prompt="The capital of France is",
                                      max_tokens=12, temperature=0, stream=True)
    text = "".join(c.choices[0].text for c in scomp if c.choices)
    check(text == comp.choices[0].text, f"completion stream == whole ({text!r})")

    emb = client.embeddings.create(model=a.model, input=["hello world", "goodbye"])
    check(len(emb.data) == 2, "two embeddings")
    for d in emb.data:
        check(len(d.embedding) == a.n_embd, f"embedding width {len(d.embedding)}")
        norm = math.sqrt(sum(x * x for x in d.embedding))
        check(abs(norm - 1.0) < 1e-4, f"unit norm ({norm:.6f})")
    emb_f = client.embeddings.create(model=a.model, input="hello world", encoding_format="float")
    check(emb_f.data[0].embedding == emb.data[0].embedding, "float == base64 embedding")

    try:
        client.chat.completions.create(model=a.model, messages=messages, max_tokens=-1)
        check(False, "max_tokens -1 refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body["param"] == "max_tokens", "max_tokens -1 -> 400")
    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
        check(False, "unknown model refused")
    except openai.NotFoundError as e:
        check(e.status_code == 404, "unknown model -> 404")
    bad = openai.OpenAI(base_url=a.base_url, api_key="wrong", max_retries=0, timeout=30)
    try:
        bad.models.list()
        check(False, "wrong key refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "wrong key -> 401")
    models = client.models.list()
    check(models.data[0].id == a.model, f"models lists {a.model}")
    print("all checks passed", flush=True)


if __name__ == "__main__":
    main()
