"""Shared by the Airflow and Prefect example tests."""

# Pure-Python stand-in for Sage's factor(), replayed as history so the Sage examples' logic
# runs on python3; with the `sage` extra the same examples run on real Sage.
FACTOR_SETUP = """
class _Factorization(list):
    def __repr__(self):
        return " * ".join(f"{p}^{e}" if e > 1 else str(p) for p, e in self)
def factor(n):
    out, p = _Factorization(), 2
    while p * p <= n:
        e = 0
        while n % p == 0:
            n, e = n // p, e + 1
        if e:
            out.append((p, e))
        p += 1
    if n > 1:
        out.append((n, 1))
    return out
"""
