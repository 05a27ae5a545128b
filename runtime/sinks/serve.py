"""A small bounded HTTP/1.1 connection server for the device: one thread waits, a fixed pool of threads answers.

Why not the stdlib `ThreadingHTTPServer`: it has a listen backlog of 5 (a burst of Prometheus scrapes times out in
SYN retries), a thread per connection with no cap and no timeout (500 half-open sockets held 510 threads until the
clients left), and it prints a traceback for every client that resets. Why not a dependency such as cheroot: it would
need the handlers rewritten as WSGI, and it hands a connection to a worker once its first bytes arrive, so a client
sending half a request still holds a worker for the timeout; the rules here fit in one small file.

How it works:
- one thread (`edgecam-http`) accepts (backlog 256) and reads each connection's request head without blocking, in a
  selector. A connection that sends nothing, or only part of its head, costs a socket and no thread; when its
  `timeout` (from accept) passes it is closed. At most `max_waiting` wait at once; more are refused at accept.
- a complete head (GET has no body) goes to a fixed pool of `workers` threads with the connection, which is then
  blocking with `timeout` for writes: a client that stops reading is dropped after `timeout`, not held forever.
- one request per connection (`Connection: close`), so an idle keep-alive connection never holds a worker.
- a client that resets or leaves is logged at debug level; only a bug in a handler logs a traceback.
Long-lived responses (MJPEG) hold a worker each: the caller caps them below `workers` so short requests always
have threads left.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import resource
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Handler = Callable[[socket.socket, bytes, tuple], None]  # (connection, request head, client address)
MAX_HEAD = 16 * 1024  # a GET's request line and headers; more is refused with 431
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"


@dataclass
class _Waiting:
    address: tuple
    deadline: float
    head: bytearray = field(default_factory=bytearray)


def head_complete(data: bytes | bytearray) -> bool:
    """A request head ends with an empty line (CRLF, or a bare LF as the stdlib parser also accepts)."""
    return b"\r\n\r\n" in data or b"\n\n" in data


class BoundedServer:
    """`listen()` binds (errors are the caller's to explain); `start()` serves; `stop()` closes every connection."""

    def __init__(
        self,
        handler: Handler,
        host: str,
        port: int,
        workers: int,
        timeout: float = 10.0,
        max_waiting: int = 1024,
        backlog: int = 256,
    ) -> None:
        self.handler, self.host, self.port = handler, host, port
        # Waiting sockets are capped by the fd limit too (a device's is often 1024): half of it stays for the rest.
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if fd_limit != resource.RLIM_INFINITY and fd_limit > 0:
            max_waiting = max(1, min(max_waiting, fd_limit // 2))
        self.workers, self.timeout, self.max_waiting, self.backlog = workers, timeout, max_waiting, backlog
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()  # handed to a worker, queued or running
        self.refused = 0  # connections closed at once because too many were waiting or queued
        self._warned = -1e9

    @property
    def active(self) -> int:
        """Connections a worker holds or will hold (requests in progress, open streams)."""
        with self._lock:
            return len(self._active)

    def listen(self) -> int:
        """Bind and listen; the bound port. Raises `socket.gaierror` or `OSError` as the system does."""
        found = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        # IPv4 first when a name has both (`localhost` stays 127.0.0.1, as with the stdlib server); `::` still works.
        family, kind, proto, _, address = min(found, key=lambda info: info[0] != socket.AF_INET)
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener = sock
        self.port = int(sock.getsockname()[1])
        return self.port

    def start(self) -> None:
        if self._listener is None:
            self.listen()
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="edgecam-http-worker")
        self._thread = threading.Thread(target=self._loop, name="edgecam-http", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close waiting connections, cut the ones workers hold, and wait for the workers."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            held = list(self._active)
        for conn in held:  # a worker blocked writing to a client that does not read wakes up with an error
            _quietly(conn.shutdown, socket.SHUT_RDWR)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        with self._lock:
            left, self._active = list(self._active), set()
        for conn in left:  # queued, never served: cancelled above
            _close(conn)

    # --- the waiting thread -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        listener = self._listener
        assert listener is not None
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, None)
        order: collections.deque[tuple[float, socket.socket]] = collections.deque()  # by deadline (= accept order)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=0.1):
                    if key.data is None:
                        self._accept(listener, selector, order)
                    else:
                        self._read(key.fileobj, key.data, selector)  # type: ignore[arg-type]
                now = time.monotonic()
                while order and order[0][0] <= now:
                    _, conn = order.popleft()
                    if conn.fileno() >= 0 and _registered(selector, conn):
                        selector.unregister(conn)
                        _close(conn)  # it never sent a whole request in time
        finally:
            for key in list(selector.get_map().values()):
                if key.data is not None:
                    _close(key.fileobj)  # type: ignore[arg-type]
            selector.close()
            listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector, order: collections.deque) -> None:
        for _ in range(64):  # a batch, then back to the readers
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the connection stays in the backlog for later
                now = time.monotonic()
                if now - self._warned > 10:  # once in a while, not once per loop
                    log.warning("http: cannot accept connections: %s", exc)
                    self._warned = now
                time.sleep(0.05)  # the listener stays readable: do not spin
                return
            if len(selector.get_map()) > self.max_waiting:
                self.refused += 1
                _send_and_close(conn, _BUSY)
                continue
            conn.setblocking(False)
            deadline = time.monotonic() + self.timeout
            selector.register(conn, selectors.EVENT_READ, _Waiting(address, deadline))
            order.append((deadline, conn))

    def _read(self, conn: socket.socket, waiting: _Waiting, selector: selectors.BaseSelector) -> None:
        try:
            data = conn.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client left (or reset) before finishing its request
            selector.unregister(conn)
            _close(conn)
            return
        waiting.head += data
        if head_complete(waiting.head):
            selector.unregister(conn)
            self._dispatch(conn, bytes(waiting.head), waiting.address)
        elif len(waiting.head) > MAX_HEAD:
            selector.unregister(conn)
            _send_and_close(conn, _TOO_LARGE)

    def _dispatch(self, conn: socket.socket, head: bytes, address: tuple) -> None:
        with self._lock:
            if len(self._active) >= self.max_waiting:  # workers far behind: shed rather than queue without bound
                self.refused += 1
                full = True
            else:
                self._active.add(conn)
                full = False
        if full:
            _send_and_close(conn, _BUSY)
            return
        assert self._pool is not None
        self._pool.submit(self._serve, conn, head, address)

    # --- a worker ---------------------------------------------------------------------------------------------

    def _serve(self, conn: socket.socket, head: bytes, address: tuple) -> None:
        try:
            if self._stopping.is_set():
                return
            conn.setblocking(True)
            conn.settimeout(self.timeout)  # for writes now: a client that stops reading is dropped
            self.handler(conn, head, address)
        except OSError as exc:  # reset, broken pipe, timeout: the client's doing, not ours
            log.debug("http: client %s went away: %s", address[0], exc)
        except Exception:
            log.exception("http: error while answering %s", address[0])
        finally:
            with self._lock:
                self._active.discard(conn)
            _quietly(conn.shutdown, socket.SHUT_WR)
            _close(conn)


def _registered(selector: selectors.BaseSelector, conn: socket.socket) -> bool:
    try:
        selector.get_key(conn)
        return True
    except (KeyError, ValueError):
        return False


def _quietly(call: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(OSError):
        call(*args)


def _close(conn: socket.socket) -> None:
    _quietly(conn.close)


def _send_and_close(conn: socket.socket, data: bytes) -> None:
    """Best effort: a short answer the client may or may not read, then close."""
    conn.setblocking(False)
    _quietly(conn.send, data)
    _close(conn)
