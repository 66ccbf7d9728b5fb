#!/usr/bin/env python3
"""llama-cpp-python's OpenAI-compatible server (python -m llama_cpp.server, same flags) with
llama.cpp's CPU extra buffer types (repack/AMX weight layouts) off: with them on,
llama-cpp-python 0.3.36 segfaults in llama_decode on the SmolLM2 Q4_1 model on AMX-capable CPUs
(as scripts/reference/llamacpp_golden.py notes). The server has no flag for it, so the model
parameters' default is patched before the server builds its Llama.
"""
import llama_cpp.llama_cpp as C

_default_params = C.llama_model_default_params


def _params_without_extra_bufts():
    p = _default_params()
    p.use_extra_bufts = False
    return p


C.llama_model_default_params = _params_without_extra_bufts

from llama_cpp.server.__main__ import main  # noqa: E402  (after the patch)

if __name__ == "__main__":
    main()
