"""The seed's way, for bench/pht.sh: what pht-train-container-library 2.x
computes in post_run_protocol at one station and pre_run_protocol at the
next, with the same calls (Python's cryptography AES-CBC + PKCS#7 padder,
hashlib SHA-512, RSA-PSS/OAEP, tarfile in memory like get_archive and
put_archive), on a results tar. Docker's own get_archive / put_archive /
commit are not included, so this is a lower bound of the library's time.

  gen DIR BYTES FILES   write DIR/results.tar (random results, not timed)
  run DIR               post-run then pre-run; prints wall seconds, peak RSS MiB, CPU seconds
"""
import hashlib, io, os, resource, sys, tarfile, time
from cryptography.hazmat.primitives import hashes, padding as sympad
from cryptography.hazmat.primitives.asymmetric import rsa, padding, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA512()), salt_length=padding.PSS.MAX_LENGTH)
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA512()), algorithm=hashes.SHA512(), label=None)


def enc(key, iv, data):
    p = sympad.PKCS7(128).padder()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + e.update(p.update(data) + p.finalize()) + e.finalize()


def dec(key, data):
    d = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    u = sympad.PKCS7(128).unpadder()
    return u.update(d.update(data[16:]) + d.finalize()) + u.finalize()


def gen(d, total, files):
    total, files = int(total), int(files)
    per = total // files
    with tarfile.open(os.path.join(d, "results.tar"), "w") as tf:
        for i in range(files):
            ti = tarfile.TarInfo("pht_results/part%d/r%d.bin" % (i // 100, i))
            ti.size = per
            tf.addfile(ti, io.BytesIO(os.urandom(per)))


def read_archive(path):
    # get_archive: the library collects the streamed tar into a BytesIO
    buf = io.BytesIO()
    with open(path, "rb") as f:
        while True:
            c = f.read(1 << 20)
            if not c:
                break
            buf.write(c)
    buf.seek(0)
    tf = tarfile.open(fileobj=buf)
    return [(m, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]


def write_archive(path, members):
    # put_archive: a tar built in a BytesIO, then handed to the engine
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for m, data in members:
            m.size = len(data)
            m.mtime = time.time()
            tf.addfile(m, io.BytesIO(data))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def run(d):
    s1, s2 = rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048)
    sid = os.urandom(64)
    start = time.monotonic()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    # post-run at s1: hash, sign, chain digest, new key for every stop, encrypt
    members = read_archive(os.path.join(d, "results.tar"))
    h = hashlib.sha512()
    for _, data in members:
        h.update(data)
    h.update(sid)
    e_d = h.digest()
    e_d_sig = s1.sign(e_d, PSS, utils.Prehashed(hashes.SHA512()))
    d0 = hashlib.sha512(sid + e_d).digest()
    s1.sign(d0, PSS, utils.Prehashed(hashes.SHA512()))
    key, iv = os.urandom(32), os.urandom(16)
    wrapped = [k.public_key().encrypt(key, OAEP) for k in (s1, s2)]
    sealed = [(m, enc(key, iv, data)) for m, data in members]
    del members
    write_archive(os.path.join(d, "sealed.tar"), sealed)
    del sealed
    # pre-run at s2: unwrap, decrypt, results hash, signature, decrypted tar
    k2 = s2.decrypt(wrapped[1], OAEP)
    members = read_archive(os.path.join(d, "sealed.tar"))
    plain = [(m, dec(k2, data)) for m, data in members]
    del members
    h = hashlib.sha512()
    for _, data in plain:
        h.update(data)
    h.update(sid)
    assert h.digest() == e_d, "results hash"
    s1.public_key().verify(e_d_sig, e_d, PSS, utils.Prehashed(hashes.SHA512()))
    write_archive(os.path.join(d, "decrypted.tar"), plain)
    secs = time.monotonic() - start
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime
    rss = ru.ru_maxrss / 1024
    os.remove(os.path.join(d, "sealed.tar"))
    os.remove(os.path.join(d, "decrypted.tar"))
    print("%.3f %.1f %.3f" % (secs, rss, cpu))


if __name__ == "__main__":
    {"gen": gen, "run": run}[sys.argv[1]](*sys.argv[2:])
