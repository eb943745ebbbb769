#!/usr/bin/env python3
"""The original design, as a reference for `make bench`: a single-threaded
`socketserver.TCPServer` that reads one line, tests it by trial division
(or with gmpy2, given --gmpy2), and writes T, F or E. Stdlib only without
--gmpy2. It keeps no audit log, as the tutorial's server did not.

Prints "listening HOST:PORT" on stdout once bound, so the bench can find it.
"""
import argparse
import math
import socketserver
import sys


def is_prime_trial(n: int) -> bool:
    if n < 2:
        return False
    if n < 4:
        return True
    if n % 2 == 0 or n % 3 == 0:
        return False
    limit = math.isqrt(n)
    i = 5
    while i <= limit:
        if n % i == 0 or n % (i + 2) == 0:
            return False
        i += 6
    return True


def make_handler(is_prime):
    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if not line:
                return
            try:
                n = int(line)
            except ValueError:
                self.wfile.write(b"E\n")
                return
            self.wfile.write(b"T\n" if is_prime(n) else b"F\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--gmpy2", action="store_true", help="test with gmpy2.is_prime")
    args = parser.parse_args()
    if args.gmpy2:
        import gmpy2

        def is_prime(n):
            return n >= 2 and bool(gmpy2.is_prime(n))
    else:
        is_prime = is_prime_trial
    host, port = args.listen.rsplit(":", 1)
    socketserver.TCPServer.allow_reuse_address = True
    socketserver.TCPServer.request_queue_size = 1024
    with socketserver.TCPServer((host, int(port)), make_handler(is_prime)) as server:
        bound_host, bound_port = server.server_address[:2]
        print(f"listening {bound_host}:{bound_port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())
