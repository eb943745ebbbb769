#!/usr/bin/env python3
"""gmpy2's primality tests timed in this process, for the primality section
of `prime-bench compare`: the reference that prime-server's CPU per request
is set against, with no sockets, no parsing and no server around it.

Reads groups of numbers on stdin, one group a line (decimal integers
separated by spaces). For each group prints one line,
"STRONG_PRP IS_PRIME CALL": the seconds one call of `gmpy2.is_strong_prp(n,
2)` (one strong base-2 test), of `gmpy2.is_prime(n)` (GMP's
`mpz_probab_prime_p` with gmpy2's default 25 rounds) and of
`gmpy2.is_odd(n)` (next to nothing: the loop and the call alone, which the
other two include) takes, averaged over the group's numbers. Each is timed as a loop
over all of them (already `mpz`), run enough times to last at least
--seconds, and the best of --repeat such timings is taken (timeit's advice:
the others only add the machine's noise). A number either test does not
call prime is an error (exit status 1).

`--version` prints gmpy2's and GMP's versions.
"""
import argparse
import sys
import timeit

import gmpy2


def per_call(stmt, numbers, seconds, repeat):
    """Seconds per call of `stmt` (which loops over `ns`), best of `repeat`."""
    timer = timeit.Timer(
        stmt,
        setup=(
            "ns = numbers; sprp = gmpy2.is_strong_prp; "
            "is_prime = gmpy2.is_prime; is_odd = gmpy2.is_odd"
        ),
        globals={"numbers": numbers, "gmpy2": gmpy2},
    )
    loops = 1
    while True:
        took = timer.timeit(loops)
        if took >= seconds:
            break
        # Aim a little past the target, at least doubling.
        loops = max(loops * 2, int(loops * seconds * 1.2 / max(took, 1e-9)))
    best = min([took] + timer.repeat(repeat=max(repeat, 1) - 1, number=loops))
    return best / (loops * len(numbers))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--version", action="store_true")
    args = parser.parse_args()
    if args.version:
        print(f"gmpy2 {gmpy2.version()}, {gmpy2.mp_version()}")
        return 0
    for line in sys.stdin:
        numbers = [gmpy2.mpz(word) for word in line.split()]
        if not numbers:
            continue
        for n in numbers:
            if not (gmpy2.is_strong_prp(n, 2) and gmpy2.is_prime(n)):
                print(f"{n} is not prime to gmpy2", file=sys.stderr)
                return 1
        strong = per_call("for n in ns: sprp(n, 2)", numbers, args.seconds, args.repeat)
        full = per_call("for n in ns: is_prime(n)", numbers, args.seconds, args.repeat)
        call = per_call("for n in ns: is_odd(n)", numbers, args.seconds, args.repeat)
        print(f"{strong!r} {full!r} {call!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
