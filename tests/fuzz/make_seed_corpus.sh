#!/usr/bin/env bash
# Writes the seed corpora for the libFuzzer targets: OUT_DIR/gguf for anvil_gguf_fuzz and
# OUT_DIR/safetensors for anvil_safetensors_fuzz. Run either fuzzer with -max_len=8192 on its
# directory. Usage: tests/fuzz/make_seed_corpus.sh BUILD_DIR OUT_DIR
#   (BUILD_DIR must have built anvil_make_tiny_model; the fuzz build dir does not need to.)
#
# GGUF: the tiny llama from anvil_make_tiny_model (whole, and the first 8 KiB of it and of its F32
# untied variant: header, metadata, tensor infos) and a small file with every value type.
# safetensors: files laid out byte for byte as SafetensorsWriter writes them (compact JSON, keys in
# insertion order, padded with spaces to 8 bytes): every dtype with scalar and empty shapes, empty
# tensors with huge dimensions, metadata only, no tensors; a spaced-out header listing tensors out
# of data order; and a cut of tests/fixtures/train/torch_tied.safetensors (its metadata and its
# small tensors, real bytes; the whole file is 2 MiB, past -max_len).
set -euo pipefail
build=$1
out=$2
fixture="$(cd "$(dirname "$0")/../fixtures/train" && pwd)/torch_tied.safetensors"
mkdir -p "$out/gguf" "$out/safetensors"

g="$out/gguf"
tool="$build/tests/tools/anvil_make_tiny_model"
"$tool" "$g/tiny.gguf"
"$tool" "$g/f32.tmp" --f32 --untied --seed 7
head -c 8192 "$g/tiny.gguf" > "$g/tiny_head.gguf"
head -c 8192 "$g/f32.tmp" > "$g/tiny_f32_untied_head.gguf"
rm "$g/f32.tmp"
python3 - "$g/all_types.gguf" <<'PY'
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

python3 - "$out/safetensors" "$fixture" <<'PY'
import json, os, struct, sys
out, fixture = sys.argv[1], sys.argv[2]

def write(name, meta, tensors):
    # SafetensorsWriter's layout: u64 length, compact JSON in insertion order padded with spaces so
    # that the data is 8-aligned, then the tensors [(name, dtype, shape, bytes)] packed in order.
    obj, data = {}, b''
    if meta:
        obj['__metadata__'] = meta
    for tname, dtype, shape, raw in tensors:
        offsets = [len(data), len(data) + len(raw)]
        obj[tname] = {'dtype': dtype, 'shape': shape, 'data_offsets': offsets}
        data += raw
    text = json.dumps(obj, ensure_ascii=False, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(os.path.join(out, name), 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + data)

f32 = struct.pack('<6f', 1.0, -2.5, 3.25, 0.0, -0.0, 1e-40)
write('all_dtypes.safetensors', {'format': 'pt', 'note': 'ünïcode "quoted"\n'}, [
    ('z.weight', 'F32', [2, 3], f32),
    ('a.half', 'F16', [4], struct.pack('<4H', 0x3E00, 0xFBFF, 0x7C00, 0x0001)),
    ('m.bf16', 'BF16', [1, 2], struct.pack('<2H', 0x4040, 0x7FC0)),
    ('ids', 'I64', [2], struct.pack('<2q', -1, 1 << 40)),
    ('u64', 'U64', [1], struct.pack('<Q', 2**64 - 1)),
    ('i32', 'I32', [2], struct.pack('<2i', -7, 7)),
    ('u32', 'U32', [1], struct.pack('<I', 9)),
    ('i16', 'I16', [1], struct.pack('<h', -2)),
    ('u16', 'U16', [1], struct.pack('<H', 2)),
    ('u8', 'U8', [3], b'abc'),
    ('flag', 'BOOL', [], b'\x01'),
    ('empty', 'I32', [0, 5], b''),
    ('i8', 'I8', [1], b'\xff'),
    ('d', 'F64', [1], struct.pack('<d', 0.1)),
    ('e4m3', 'F8_E4M3', [2], b'\x38\x7f'),
    ('e5m2', 'F8_E5M2', [2], b'\x3c\x7c'),
    ('scalar', 'F32', [], struct.pack('<f', 0.5)),
])
# Empty tensors with huge dimensions before the zero (accepted, as by Python's reader).
write('empty_huge_dims.safetensors', {}, [
    ('u8', 'U8', [2**62, 2, 0], b''),
    ('bf16', 'BF16', [2**62, 1, 0], b''),
    ('i8', 'I8', [0, 2**63 - 1, 2**63 - 1], b''),
])
write('metadata_only.safetensors', {'k': 'v', 'empty': ''}, [])
write('no_tensors.safetensors', {}, [])
write('python_small.safetensors', {'k': 'v'}, [  # the bytes Python's writer gives (unit test)
    ('b', 'F32', [2, 3], struct.pack('<6f', 0, 1, 2, 3, 4, 5)),
    ('a', 'F16', [2], struct.pack('<2H', 0x3E00, 0xC000)),
])

# Spaced-out JSON (other writers), tensors listed in the reverse of their data order.
obj = {'__metadata__': {'format': 'pt'},
       'b': {'dtype': 'BF16', 'shape': [2], 'data_offsets': [8, 12]},
       'a': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}}
text = json.dumps(obj, indent=1).encode()
with open(os.path.join(out, 'spaced_out_of_order.safetensors'), 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + struct.pack('<2f2H', 1, 2, 0x3F80, 0x4000))

# PyTorch's file: its metadata and its tensors of at most 256 bytes, real bytes, repacked.
with open(fixture, 'rb') as f:
    blob = f.read()
(n,) = struct.unpack('<Q', blob[:8])
torch = json.loads(blob[8:8 + n])
base = 8 + n
small = []
for tname, e in torch.items():
    if tname == '__metadata__':
        continue
    b, end = e['data_offsets']
    if end - b <= 256 and len(small) < 24:
        small.append((tname, e['dtype'], e['shape'], blob[base + b:base + end]))
write('torch_tied_small.safetensors', torch.get('__metadata__', {}), small)
PY
ls -l "$out/gguf" "$out/safetensors"
