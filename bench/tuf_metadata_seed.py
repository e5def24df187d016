#!/usr/bin/env python3
"""The anchor of `tuf pull-metadata` in bench/tuf.sh: what a Python TUF
client must do at least with the same four metadata files, once they are
fetched: parse each, encode its signed part as canonical JSON (the OLPC form
TUF signs) and check its ed25519 signatures against the keys root gives the
role. Usage: tuf_metadata_seed.py DIR (root.json, timestamp.json,
snapshot.json, targets.json as the benchmark dumped them). Prints the
seconds taken and exits non-zero if a signature does not verify."""
import json
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def canonical(o, out):
    # OLPC canonical JSON, as securesystemslib encodes it: sorted keys, no
    # whitespace, strings escaping only backslash and double quote.
    if isinstance(o, dict):
        out.append("{")
        for i, k in enumerate(sorted(o)):
            if i:
                out.append(",")
            canonical(k, out)
            out.append(":")
            canonical(o[k], out)
        out.append("}")
    elif isinstance(o, list):
        out.append("[")
        for i, v in enumerate(o):
            if i:
                out.append(",")
            canonical(v, out)
        out.append("]")
    elif isinstance(o, str):
        out.append('"' + o.replace("\\", "\\\\").replace('"', '\\"') + '"')
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif o is None:
        out.append("null")
    elif isinstance(o, int):
        out.append(str(o))
    else:
        raise ValueError("not canonical JSON: %r" % (o,))


def verify(md, keys, role):
    out = []
    canonical(md["signed"], out)
    msg = "".join(out).encode()
    ok = 0
    for s in md["signatures"]:
        k = keys.get(s["keyid"])
        if k is None or s["keyid"] not in role["keyids"]:
            continue
        k.verify(bytes.fromhex(s["sig"]), msg)  # raises on a bad signature
        ok += 1
    if ok < role["threshold"]:
        sys.exit("threshold not met")


def main():
    d = sys.argv[1]
    start = time.perf_counter()
    docs = {}
    for name in ("root", "timestamp", "snapshot", "targets"):
        with open("%s/%s.json" % (d, name), "rb") as f:
            docs[name] = json.loads(f.read())
    root = docs["root"]["signed"]
    keys = {kid: Ed25519PublicKey.from_public_bytes(bytes.fromhex(k["keyval"]["public"]))
            for kid, k in root["keys"].items() if k["keytype"] == "ed25519"}
    for name, md in docs.items():
        verify(md, keys, root["roles"][name])
    print("%.3f" % (time.perf_counter() - start))


main()
