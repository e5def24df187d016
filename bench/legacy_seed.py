"""The azaion seed's way, for bench/legacy.sh.

  gen DIR BYTES FRAGMENT   write DIR/images.enc: a docker-save tar (one image,
                           azaion/bench:1.2, four uncompressed random layers of
                           BYTES in all, legacy <id>/layer.tar layout) as
                           IV || AES-256-CBC(SHA-256(FRAGMENT), PKCS#7) (not timed)
  tar DIR BYTES            only the docker-save tar, as DIR/images.tar
  run DIR FRAGMENT HOST CRANE
                           what the seed's loader does: decrypt with Python's
                           cryptography to DIR/images.tar, then `crane push` it
                           (in place of `docker load`) to HOST/azaion/bench:1.2;
                           prints wall seconds
"""
import hashlib, io, json, os, subprocess, sys, tarfile, time
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHUNK = 1 << 20


def key(fragment):
    return hashlib.sha256(fragment.encode()).digest()


def gen(d, total, fragment=None):
    total = int(total)
    per = total // 4
    layers, diff_ids = [], []
    plain = os.path.join(d, "images.tar")
    with tarfile.open(plain, "w") as tf:
        for i in range(4):
            lt = io.BytesIO()
            with tarfile.open(fileobj=lt, mode="w") as inner:
                ti = tarfile.TarInfo("data/part%d.bin" % i)
                ti.size = per
                inner.addfile(ti, io.BytesIO(os.urandom(per)))
            b = lt.getvalue()
            h = hashlib.sha256(b).hexdigest()
            diff_ids.append("sha256:" + h)
            ti = tarfile.TarInfo(h + "/layer.tar")
            ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))
            layers.append(h + "/layer.tar")
            del b, lt
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        ch = hashlib.sha256(cfg).hexdigest()
        ti = tarfile.TarInfo(ch + ".json")
        ti.size = len(cfg)
        tf.addfile(ti, io.BytesIO(cfg))
        man = json.dumps([{"Config": ch + ".json", "RepoTags": ["azaion/bench:1.2"], "Layers": layers}]).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(man)
        tf.addfile(ti, io.BytesIO(man))
    if fragment is None:
        return
    iv = os.urandom(16)
    e = Cipher(algorithms.AES(key(fragment)), modes.CBC(iv)).encryptor()
    p = sympad.PKCS7(128).padder()
    with open(plain, "rb") as src, open(os.path.join(d, "images.enc"), "wb") as dst:
        dst.write(iv)
        while True:
            b = src.read(CHUNK)
            if not b:
                break
            dst.write(e.update(p.update(b)))
        dst.write(e.update(p.finalize()) + e.finalize())
    os.remove(plain)


def run(d, fragment, host, crane):
    t0 = time.time()
    plain = os.path.join(d, "images.tar")
    with open(os.path.join(d, "images.enc"), "rb") as src, open(plain, "wb") as dst:
        iv = src.read(16)
        dec = Cipher(algorithms.AES(key(fragment)), modes.CBC(iv)).decryptor()
        u = sympad.PKCS7(128).unpadder()
        while True:
            b = src.read(CHUNK)
            if not b:
                break
            dst.write(u.update(dec.update(b)))
        dst.write(u.update(dec.finalize()) + u.finalize())
    subprocess.run([crane, "push", "--insecure", plain, host + "/azaion/bench:1.2"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(plain)
    print("%.2f" % (time.time() - t0))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(*sys.argv[2:5])
    elif sys.argv[1] == "tar":
        gen(*sys.argv[2:4])
    else:
        run(*sys.argv[2:6])
