#!/usr/bin/env bash
# Writes a seed corpus for anvil_gguf_fuzz into OUT_DIR: the tiny llama from anvil_make_tiny_model
# (whole, and the first 8 KiB of it and of its F32 untied variant: header, metadata, tensor infos)
# and a small file with every value type. Run the fuzzer with -max_len=8192. Usage: tests/fuzz/make_seed_corpus.sh BUILD_DIR OUT_DIR
#   (BUILD_DIR must have built anvil_make_tiny_model; the fuzz build dir does not need to.)
set -euo pipefail
build=$1
out=$2
mkdir -p "$out"
tool="$build/tests/tools/anvil_make_tiny_model"
"$tool" "$out/tiny.gguf"
"$tool" "$out/f32.tmp" --f32 --untied --seed 7
head -c 8192 "$out/tiny.gguf" > "$out/tiny_head.gguf"
head -c 8192 "$out/f32.tmp" > "$out/tiny_f32_untied_head.gguf"
rm "$out/f32.tmp"
python3 - "$out/all_types.gguf" <<'PY'
import struct, sys
def s(x): x = x.encode(); return struct.pack('<Q', len(x)) + x
kv = [
    (0, struct.pack('<B', 200)), (1, struct.pack('<b', -3)), (2, struct.pack('<H', 9)),
    (3, struct.pack('<h', -9)), (4, struct.pack('<I', 64)), (5, struct.pack('<i', -1)),
    (6, struct.pack('<f', 0.5)), (7, b'\x01'), (8, s('text')), (10, struct.pack('<Q', 1 << 40)),
    (11, struct.pack('<q', -5)), (12, struct.pack('<d', 2.5)),
    (9, struct.pack('<IQ', 8, 2) + s('a') + s('bc')),
    (9, struct.pack('<IQ', 5, 3) + struct.pack('<3i', 1, 2, 3)),
    (9, struct.pack('<IQ', 7, 2) + b'\x00\x01'),
]
body = b''
for i, (t, v) in enumerate(kv):
    body += s('k%d' % i) + struct.pack('<I', t) + v
body += s('general.alignment') + struct.pack('<II', 4, 32)
tensors = [('a', [8], 0, 32), ('b', [32, 2], 8, 68), ('c', [4], 30, 8)]
off = 0
for name, ne, typ, size in tensors:
    body += s(name) + struct.pack('<I', len(ne)) + b''.join(struct.pack('<Q', d) for d in ne)
    body += struct.pack('<IQ', typ, off)
    off += (size + 31) // 32 * 32
data = b'GGUF' + struct.pack('<IQQ', 3, len(tensors), len(kv) + 1) + body
data += b'\x00' * ((-len(data)) % 32) + b'\x07' * off
open(sys.argv[1], 'wb').write(data)
PY
ls -l "$out"
