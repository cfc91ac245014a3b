# A numerical check too long for a Jupyter cell: the Mertens function M(x) and the prime count
# pi(x) up to LIMIT, in CHUNKS steps. Each step is computed two ways (Sage's moebius/is_prime
# and PARI's own sum / Sage's prime_pi) and prints its progress; the last line is JSON.
import json
import os

limit = int(os.environ.get("LIMIT", "10000000"))
chunks = int(os.environ.get("CHUNKS", "10"))
size = limit // chunks
mertens = primes = 0
for i in range(chunks):
    lo, hi = i * size + 1, (limit if i == chunks - 1 else (i + 1) * size)
    part = sum(moebius(n) for n in range(lo, hi + 1))
    if part != pari(f"sum(n={lo}, {hi}, moebius(n))"):
        raise ArithmeticError(f"moebius sums disagree on [{lo}, {hi}]")
    mertens += part
    primes += sum(1 for n in range(lo, hi + 1) if is_prime(n))
    if primes != prime_pi(hi):
        raise ArithmeticError(f"prime counts disagree at {hi}")
    print(f"chunk {i + 1}/{chunks}: M({hi}) = {mertens}, pi({hi}) = {primes}", flush=True)
print(json.dumps({"limit": limit, "mertens": int(mertens), "primes": int(primes)}))
