"""Interop fixtures for trainyard's pht-v2 tests, written with Python's
cryptography exactly the way pht-train-container-library 2.x and the PHT
central builder compute things (research/pht.md §1). Not the library itself:
its protocol needs Docker; this reproduces its hashing and crypto calls.

  gen OUTDIR      a train after station s1's post-run, as the Python side
                  leaves it: OUTDIR/opt/..., keys in OUTDIR/keys/
  verify DIR KEYS STATION_INDEX
                  check a train written by trainyard like the Python
                  pre-run at the next stop and the desktop app would
"""
import hashlib, json, os, sys
from cryptography.hazmat.primitives import hashes, serialization, padding as sympad
from cryptography.hazmat.primitives.asymmetric import rsa, padding, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.MAX_LENGTH)
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA512()), algorithm=hashes.SHA512(), label=None)


def pub_hex(k, fmt=serialization.PublicFormat.SubjectPublicKeyInfo):
    return k.public_key().public_bytes(serialization.Encoding.PEM, fmt).hex()


def enc(key, iv, data):
    p = sympad.PKCS7(128).padder()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + e.update(p.update(data) + p.finalize()) + e.finalize()


def dec(key, data):
    d = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    u = sympad.PKCS7(128).unpadder()
    return u.update(d.update(data[16:]) + d.finalize()) + u.finalize()


def walk_files(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        # moby's archive: filepath.Walk order, names sorted per directory,
        # directories and files interleaved
        entries = sorted(dirnames + filenames)
        for n in entries:
            if n in filenames:
                out.append(os.path.join(dirpath, n))
    # os.walk visits files of a dir before subdirs; re-sort into Walk order
    return sorted(out, key=lambda p: os.path.relpath(p, root).split(os.sep))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def gen(out):
    keys = {n: rsa.generate_private_key(65537, 2048) for n in ("s1", "s2", "user", "builder")}
    sid = os.urandom(64)
    files = {"entrypoint.py": b"print('hello from python')\n", "lib/util.py": b"X = 42\n"}
    file_list = ["./entrypoint.py", "./lib/util.py"]
    query = b'{"query":{"resource":"Patient"}}'
    user_id = "7"  # central writes a numeric id; pydantic hashes str(7)
    h = hashlib.sha512(user_id.encode() + b"".join(files[f[2:]] for f in file_list) + sid + query).digest()
    user_sig = keys["user"].sign(h, padding.PKCS1v15(), hashes.SHA512())
    build_sig = keys["builder"].sign(h + user_sig, padding.PKCS1v15(), hashes.SHA512())

    # station s1 ran: results in Walk order, hash, sign, chain, new key
    results = {"model.json": b'{"w":[1,2,3]}', "sub/stats.csv": b"n,mean\n10,3.5\n", "sub.txt": b"after sub/"}
    order = sorted(results, key=lambda p: p.split("/"))
    e_d = hashlib.sha512(b"".join(results[n] for n in order) + sid).digest()
    e_d_sig = keys["s1"].sign(e_d, PSS, utils.Prehashed(hashes.SHA512()))
    d0 = hashlib.sha512(sid + e_d).digest()
    d0_sig = keys["s1"].sign(d0, PSS, utils.Prehashed(hashes.SHA512()))
    k2, iv_r, iv_t = os.urandom(32), os.urandom(16), os.urandom(16)

    cfg = {
        "source": {"type": "docker_repository", "address": "harbor/master/python/base", "tag": "latest", "branch": None},
        "creator": {"id": 7, "rsa_public_key": pub_hex(keys["user"], serialization.PublicFormat.PKCS1),
                    "paillier_public_key": None, "encrypted_key": keys["user"].public_key().encrypt(k2, OAEP).hex()},
        "proposal_id": 3, "@id": "py-train", "@context": None, "session_id": sid.hex(),
        "route": [
            {"station": "s1", "eco_system": "tue", "rsa_public_key": pub_hex(keys["s1"]), "index": 0,
             "signature": {"signature": d0_sig.hex(), "digest": d0.hex()},
             "encrypted_key": keys["s1"].public_key().encrypt(k2, OAEP).hex()},
            {"station": "s2", "eco_system": "tue", "rsa_public_key": pub_hex(keys["s2"]), "index": 1,
             "signature": None, "encrypted_key": keys["s2"].public_key().encrypt(k2, OAEP).hex()},
        ],
        "file_list": file_list, "hash": h.hex(), "signature": user_sig.hex(),
        "build": {"signature": build_sig.hex(), "rsa_public_key": pub_hex(keys["builder"])},
        "result_hash": e_d.hex(), "result_signature": e_d_sig.hex(),
    }
    write(os.path.join(out, "opt/train_config.json"), json.dumps(cfg, indent=2).encode())
    write(os.path.join(out, "opt/user_sym_key.key"), bytes.fromhex(cfg["creator"]["encrypted_key"]))
    for n, c in files.items():
        write(os.path.join(out, "opt/pht_train", n), enc(k2, iv_t, c))
    write(os.path.join(out, "opt/pht_train/query.json"), enc(k2, iv_t, query))
    for n, c in results.items():
        write(os.path.join(out, "opt/pht_results", n), enc(k2, iv_r, c))
    write(os.path.join(out, "keys/s2.pem"), keys["s2"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    write(os.path.join(out, "keys/user.pem"), keys["user"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret")))


def verify(d, keydir, own):
    """What Python's pre-run at stop `own` and the desktop app check."""
    own = int(own)
    cfg = json.load(open(os.path.join(d, "opt/train_config.json")))
    load = lambda h: serialization.load_pem_public_key(bytes.fromhex(h))
    route = sorted(cfg["route"], key=lambda s: s["index"])
    sid = bytes.fromhex(cfg["session_id"])
    for s in route[:own]:
        load(s["rsa_public_key"]).verify(bytes.fromhex(s["signature"]["signature"]),
                                         bytes.fromhex(s["signature"]["digest"]), PSS, utils.Prehashed(hashes.SHA512()))
    # digest chain recomputed (Python never does; we check trainyard's math)
    e_d = bytes.fromhex(cfg["result_hash"])
    prev = []
    user = serialization.load_pem_private_key(open(os.path.join(keydir, "user.pem"), "rb").read(), b"secret")
    k = user.decrypt(bytes.fromhex(cfg["creator"]["encrypted_key"]), OAEP)
    rd = os.path.join(d, "opt/pht_results")
    plain = [dec(k, open(p, "rb").read()) for p in walk_files(rd)]
    assert hashlib.sha512(b"".join(plain) + sid).digest() == e_d, "result hash"
    load(route[own - 1]["rsa_public_key"]).verify(bytes.fromhex(cfg["result_signature"]), e_d, PSS, utils.Prehashed(hashes.SHA512()))
    last = route[own - 1]["signature"]
    chain = [bytes.fromhex(s["signature"]["digest"]) for s in route[:own - 1]]
    want = hashlib.sha512((sid if not chain else b"".join(chain)) + e_d).digest()
    assert bytes.fromhex(last["digest"]) == want, "digest chain"
    # immutable files
    td = os.path.join(d, "opt/pht_train")
    q = dec(k, open(os.path.join(td, "query.json"), "rb").read())
    files = b"".join(dec(k, open(os.path.join(td, f[2:]), "rb").read()) for f in cfg["file_list"])
    h = hashlib.sha512(str(cfg["creator"]["id"]).encode() + files + sid + q).digest()
    assert h.hex() == cfg["hash"], "immutable hash"
    load(cfg["creator"]["rsa_public_key"]).verify(bytes.fromhex(cfg["signature"]), h, padding.PKCS1v15(), hashes.SHA512())
    load(cfg["build"]["rsa_public_key"]).verify(bytes.fromhex(cfg["build"]["signature"]),
                                               bytes.fromhex(cfg["hash"] + cfg["signature"]), padding.PKCS1v15(), hashes.SHA512())
    for s in route:
        assert s["encrypted_key"], "key wrapped for every stop"
    assert open(os.path.join(d, "opt/user_sym_key.key"), "rb").read().hex() == cfg["creator"]["encrypted_key"]
    print("python verify ok:", len(plain), "result files")


if __name__ == "__main__":
    {"gen": gen, "verify": verify}[sys.argv[1]](*sys.argv[2:])
