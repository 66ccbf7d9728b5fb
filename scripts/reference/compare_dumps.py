#!/usr/bin/env python3
"""Compares two activation dump directories (tests/tools/dump_activations.cc and
scripts/reference/llamacpp_dump.py write the same layout) tensor by tensor, in the graph order
of the first directory, so the first op whose output differs bitwise stands out.

Per tensor: elements, how many differ bitwise, max |a-b|, max |a-b|/|b| (b = second dir), and
the flat index of the worst element. When the row counts differ (llama.cpp keeps only the
output rows after the last layer's attention) the last common rows are compared.

Usage: compare_dumps.py ANVIL_DIR LLAMA_DIR [--eval N] [--only NAME,...] [--first]
"""

import argparse
from pathlib import Path

import numpy as np


def read_index(d: Path):
    out = []
    for line in (d / "index.tsv").read_text().splitlines():
        f = line.split("\t")
        out.append({"eval": int(f[0]), "name": f[1], "layer": int(f[2]), "rows": int(f[3]),
                    "cols": int(f[4]), "file": f[5]})
    return out


def load(d: Path, e):
    return np.fromfile(d / e["file"], dtype=np.float32).reshape(e["rows"], e["cols"])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--eval", type=int, default=None, help="only this eval call")
    ap.add_argument("--only", default="", help="comma list of names")
    ap.add_argument("--first", action="store_true", help="stop after the first differing tensor")
    args = ap.parse_args()
    da, db = Path(args.a), Path(args.b)
    ib = {(e["eval"], e["name"], e["layer"]): e for e in read_index(db)}
    only = set(x for x in args.only.split(",") if x)
    print(f"{'tensor':<26}{'elems':>8}{'ndiff':>8}{'max_abs':>12}{'max_rel':>12}{'worst@':>9}")
    for ea in read_index(da):
        if args.eval is not None and ea["eval"] != args.eval:
            continue
        if only and ea["name"] not in only:
            continue
        key = (ea["eval"], ea["name"], ea["layer"])
        tag = f"e{ea['eval']} {ea['name']}" + (f"-{ea['layer']}" if ea["layer"] >= 0 else "")
        eb = ib.get(key)
        if eb is None:
            print(f"{tag:<26} (missing in {db.name})")
            continue
        a, b = load(da, ea), load(db, eb)
        if a.size == b.size:
            a = a.reshape(b.shape)
        elif a.shape[1] != b.shape[1]:
            print(f"{tag:<26} shape {a.shape} vs {b.shape}")
            continue
        n = min(a.shape[0], b.shape[0])
        a, b = a[-n:].ravel(), b[-n:].ravel()
        nd = int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))
        diff = np.abs(a.astype(np.float64) - b)
        rel = diff / np.maximum(np.abs(b.astype(np.float64)), 1e-30)
        w = int(np.argmax(diff))
        print(f"{tag:<26}{a.size:>8}{nd:>8}{diff.max():>12.3e}{rel.max():>12.3e}{w:>9}")
        if args.first and nd:
            break


if __name__ == "__main__":
    main()
