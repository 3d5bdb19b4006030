# SPDX-License-Identifier: GPL-2.0+
"""dmuproto: the dm-user wire protocol, for the e2e tests' python clients.

The tests that drive the control device byte by byte (a header read alone,
a reply header without its data, a reply to a seq nobody issued) import
this from an inline script:

    import sys; sys.path.insert(0, os.environ['DMU_ROOT'] + '/tests/tools')
    import dmuproto as p

Everything here is small and strict: an unexpected result raises, and the
script dies with a traceback the test shows.  The layout is the one of
module/include/uapi/linux/dm-user.h: five native-endian u64 (seq, type,
flags, sector, len), then a WRITE request's or a successful READ reply's
len bytes.
"""
import errno
import os
import select
import struct
import time

HDR = struct.Struct('=5Q')
HDR_SIZE = HDR.size             # 40

# request types (DM_USER_REQ_MAP_*)
READ, WRITE, FLUSH, DISCARD = 0, 1, 2, 3
# reply status (DM_USER_RESP_*)
SUCCESS, ERROR, UNSUPPORTED = 0, 1, 2


class Msg:
    """A request or reply header."""
    __slots__ = ('seq', 'type', 'flags', 'sector', 'len')

    def __init__(self, seq, type_, flags, sector, len_):
        self.seq, self.type, self.flags, self.sector, self.len = \
            seq, type_, flags, sector, len_

    @classmethod
    def unpack(cls, b):
        if len(b) != HDR_SIZE:
            raise ValueError('header of %d bytes' % len(b))
        return cls(*HDR.unpack(b))

    def pack(self):
        return HDR.pack(self.seq, self.type, self.flags, self.sector, self.len)

    def reply(self, status=SUCCESS):
        """The reply header: this header with the status in type."""
        return HDR.pack(self.seq, status, self.flags, self.sector, self.len)

    def __repr__(self):
        return 'seq %d type %d flags %#x sector %d len %d' % (
            self.seq, self.type, self.flags, self.sector, self.len)


def open_ctl(name, flags=0):
    """Opens /dev/dm-user/NAME (a channel)."""
    return os.open('/dev/dm-user/' + name, os.O_RDWR | os.O_CLOEXEC | flags)


def read_exact(fd, n):
    """Exactly n bytes of the current request (several read() calls)."""
    out = b''
    while len(out) < n:
        b = os.read(fd, n - len(out))
        if not b:
            raise EOFError('read() returned 0 after %d of %d bytes' % (len(out), n))
        out += b
    return out


def read_header(fd):
    """A request's header alone; a WRITE's payload is left for the next read()."""
    b = os.read(fd, HDR_SIZE)
    if len(b) != HDR_SIZE:
        raise ValueError('read(%d) returned %d bytes' % (HDR_SIZE, len(b)))
    return Msg.unpack(b)


def read_request(fd):
    """(header, payload): one whole request; payload is b'' but for a WRITE."""
    m = read_header(fd)
    payload = read_exact(fd, m.len) if m.type == WRITE else b''
    return m, payload


def write_all(fd, b):
    """write() that must take all of b in one call; returns its result."""
    n = os.write(fd, b)
    if n != len(b):
        raise ValueError('write(%d bytes) returned %d' % (len(b), n))
    return n


def errno_of(fn, *args):
    """Runs fn(*args): 0 if it succeeds, else the errno's name ('EIO')."""
    try:
        fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return 0


class RamDisk:
    """An in-memory disk that answers requests as dmu-client does."""

    def __init__(self, size):
        self.data = bytearray(size)

    def answer(self, m, payload=b''):
        """The whole reply (header, and a READ's data) to request m."""
        off = m.sector * 512
        if m.type == READ:
            return m.reply(SUCCESS) + bytes(self.data[off:off + m.len])
        if m.type == WRITE:
            self.data[off:off + m.len] = payload
        elif m.type == DISCARD:
            self.data[off:off + m.len] = bytes(m.len)
        elif m.type != FLUSH:
            return m.reply(UNSUPPORTED)
        return m.reply(SUCCESS)

    def serve_one(self, fd):
        """Reads one request, answers it; returns its header."""
        m, payload = read_request(fd)
        write_all(fd, self.answer(m, payload))
        return m


def put(path, text=''):
    """Writes path atomically (the test waits for it to exist)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, path)


def wait_file(path, timeout=60.0):
    """Waits for the test to create path; raises after timeout seconds."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > end:
            raise TimeoutError('%s did not appear within %g s' % (path, timeout))
        time.sleep(0.05)


def readable(fd, timeout_ms):
    """poll() for POLLIN: the revents (0 on timeout)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    r = p.poll(timeout_ms)
    return r[0][1] if r else 0
