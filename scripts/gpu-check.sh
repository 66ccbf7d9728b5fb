#!/usr/bin/env bash
# The CUDA path's check on a GPU machine (one NVIDIA H100 or H200), in one call.
#
# That machine has nvcc, CMake, ninja and PyTorch but none of our Debian -dev packages (abseil,
# GoogleTest, Google Benchmark) and no network, so the binaries are built here, on the CPU
# machine, and travel with the shared libraries they need:
#
#   scripts/gpu-check.sh --bundle     # CPU machine: build (CUDA on, sm_90), collect into
#                                     # build/gpu-bundle/{bin,lib} (stripped, ~70 MB) and pack
#                                     # it as build/gpu-bundle.tar.gz (~25 MB)
#   scripts/gpu-check.sh              # GPU machine: unpack the tarball if the folder is not
#                                     # there, run the `cuda` tests and the CUDA kernel
#                                     # benchmarks, print a short table (GPU_CHECK_BENCH=0: the
#                                     # tests only; GPU_CHECK_FILTER=regex: those benchmarks)
#
# With the device tool (the working tree and what it carries must stay under 64 MiB, so the
# tarball travels, not the folder):
#   run(command="bash scripts/gpu-check.sh", carry=["build/gpu-bundle.tar.gz"]).
# CUDA's own libraries (cudart, cuBLAS, NCCL) are not bundled: the GPU machine's CUDA 13 and
# PyTorch's wheels have them.
# Results also go to $OUT (when set) as gpu-check.txt and the benchmarks' JSON.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/build/gpu-bundle"

bundle() {
  set -e
  local build="$ROOT/build/gpu"
  cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DANVIL_CUDA=ON \
    -DANVIL_OPENBLAS=OFF -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
  local targets=()
  local t
  for t in "$ROOT"/tests/unit/kernels_cuda_*_test.cc "$ROOT"/tests/unit/worker_nccl_test.cc \
    "$ROOT"/bench/cuda_*_bench.cc; do
    [[ -f "$t" ]] && targets+=("$(basename "${t%.cc}")")
  done
  ninja -C "$build" "${targets[@]}"
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
  for t in "${targets[@]}"; do
    local bin
    bin="$(find "$build" -type f -name "$t" -perm -u+x | head -1)"
    cp "$bin" "$BUNDLE/bin/"
    strip --strip-unneeded "$BUNDLE/bin/$t"
    # Every shared library it needs except the C/C++ runtime and CUDA's own.
    ldd "$bin" | awk '/=> \// {print $1, $3}' | while read -r name path; do
      case "$name" in
        libc.so* | libm.so* | libstdc++.so* | libgcc_s.so* | ld-linux* | libpthread.so* | \
          libdl.so* | librt.so* | libcudart.so* | libcublas.so* | libcublasLt.so* | libnccl.so*) ;;
        *) cp -L "$path" "$BUNDLE/lib/$name" ;;
      esac
    done
  done
  tar -C "$ROOT/build" -czf "$BUNDLE.tar.gz" gpu-bundle
  echo "gpu-check: bundle in $BUNDLE ($(du -sh "$BUNDLE" | cut -f1)), packed as" \
    "$BUNDLE.tar.gz ($(du -sh "$BUNDLE.tar.gz" | cut -f1)):"
  ls "$BUNDLE/bin" "$BUNDLE/lib"
}

# Directories that hold libcudart.so.13 / libcublas.so.13 on the GPU machine.
cuda_lib_dirs() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
    [[ -d "$d" ]] && printf '%s:' "$d"
  done
  # PyTorch's wheels carry CUDA's libraries too (nvidia/*/lib).
  python3 - <<'PY' 2>/dev/null
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for lib in glob.glob(os.path.join(sp, "nvidia", "*", "lib")):
        dirs.add(lib)
    for lib in glob.glob(os.path.join(sp, "nvidia", "cu13", "lib")):
        dirs.add(lib)
print(":".join(sorted(dirs)), end="")
PY
}

check() {
  if [[ ! -d "$BUNDLE/bin" && -f "$BUNDLE.tar.gz" ]]; then
    tar -C "$ROOT/build" -xzf "$BUNDLE.tar.gz"
  fi
  [[ -d "$BUNDLE/bin" ]] || { echo "gpu-check: no $BUNDLE; run scripts/gpu-check.sh --bundle on the CPU machine and carry build/gpu-bundle" >&2; exit 2; }
  local out="${OUT:-$ROOT/build/gpu-check-out}"
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$BUNDLE/lib:$(cuda_lib_dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  {
    echo "# gpu-check $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
    echo
  } | tee "$out/gpu-check.txt"
  local failed=0 t
  for t in "$BUNDLE"/bin/kernels_cuda_*_test "$BUNDLE"/bin/worker_nccl_test; do
    [[ -x "$t" ]] || continue
    echo "## $(basename "$t")" | tee -a "$out/gpu-check.txt"
    if ! timeout 300 "$t" --gtest_brief=1 2>&1 | tee -a "$out/gpu-check.txt" | tail -40; then
      failed=1
    fi
  done
  for t in "$BUNDLE"/bin/cuda_*_bench; do
    [[ "${GPU_CHECK_BENCH:-1}" == 1 ]] || break  # GPU_CHECK_BENCH=0: tests only
    local name
    name="$(basename "$t")"
    echo "## $name" | tee -a "$out/gpu-check.txt"
    timeout 300 "$t" --benchmark_filter="${GPU_CHECK_FILTER:-.}" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
      --benchmark_format=console --benchmark_out="$out/$name.json" --benchmark_out_format=json \
      2>&1 | tail -60 | tee -a "$out/gpu-check.txt"
    summarize "$out/$name.json" | tee -a "$out/gpu-check.txt"
  done
  exit "$failed"
}

# Markdown table of the medians: benchmark, time, every counter (GB/s, TFLOP/s, fractions).
summarize() {
  python3 - "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"(no benchmark JSON: {e})")
    sys.exit(0)
ctx = d.get("context", {})
rows = [b for b in d.get("benchmarks", []) if b.get("aggregate_name", "median") == "median"]
skip = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads",
        "iterations", "real_time", "cpu_time", "time_unit", "aggregate_name",
        "aggregate_unit", "family_index", "per_family_instance_index", "error_occurred",
        "error_message"}
print(f"\n| benchmark | time | counters |  ({ctx.get('host_name', '')})")
print("|---|---|---|")
for b in rows:
    if b.get("error_occurred"):
        print(f"| {b['name']} | skipped | {b.get('error_message', '')} |")
        continue
    counters = ", ".join(f"{k} {v:.4g}" for k, v in b.items()
                         if k not in skip and isinstance(v, (int, float)))
    print(f"| {b['run_name']} | {b['real_time']:.4g} {b['time_unit']} | {counters} |")
PY
}

case "${1:-}" in
  --bundle) bundle ;;
  "") check ;;
  *) echo "usage: scripts/gpu-check.sh [--bundle]" >&2; exit 2 ;;
esac
