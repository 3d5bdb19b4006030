#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Acknowledged writes, for the tests that kill a daemon under I/O.

  acked.py write DEV DATA ACKED STOP N SIZE BASE
      One process (a dd per chunk spent ~1.3 s starting under TCG): write k
      goes to chunk k % N (SIZE bytes each, from byte BASE of DEV) with the
      data of block k % (N + 1) of the file DATA, so that each round writes
      other bytes, one write at a time with O_DIRECT | O_DSYNC.  "chunk
      block" is appended to ACKED once pwrite returned (acknowledged).  Runs
      until the file STOP exists; an error ends it with a traceback, status 1.
  acked.py check DATA ACKED N SIZE COPY...
      Each COPY (a file holding the N chunks, read back from byte BASE) must
      hold, in every chunk, its last acknowledged write; status 1 (and a line
      per bad chunk) if not.  One process: a cmp per chunk spent 50 s
      forking under TCG.
"""
import mmap
import os
import sys


def write(dev, data, acked, stop, n, size, base):
    blocks = open(data, "rb").read()
    fd = os.open(dev, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
    buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT wants
    k = 0
    with open(acked, "a", buffering=1) as log:
        while not os.path.exists(stop):
            i, b = k % n, k % (n + 1)
            buf[:] = blocks[b * size:(b + 1) * size]
            os.pwrite(fd, buf, base + i * size)
            log.write("%d %d\n" % (i, b))
            k += 1
    return 0


def check(data, acked, n, size, copies):
    blocks = open(data, "rb").read()
    last = {}
    for line in open(acked):
        i, b = map(int, line.split())
        last[i] = b
    bad = 0
    for where in copies:
        got = open(where, "rb").read()
        for i in range(n):
            b = last[i]
            if got[i * size:(i + 1) * size] != blocks[b * size:(b + 1) * size]:
                print("%s: chunk %d is not its last acknowledged write (block %d)"
                      % (where, i, b))
                bad += 1
    return 1 if bad else 0


def main(argv):
    if len(argv) == 8 and argv[0] == "write":
        return write(*argv[1:5], int(argv[5]), int(argv[6]), int(argv[7]))
    if len(argv) >= 6 and argv[0] == "check":
        return check(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
