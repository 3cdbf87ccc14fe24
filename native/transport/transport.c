// A byte transport for the legacy socket's connections, without node's stream machinery. Under --jitless
// (the unit runs node that way) node's Readable/Writable, its timers and its write requests cost several
// times what answering a request costs; here a connection is a non-blocking descriptor watched by libuv
// (uv_poll), and JS gets one call per readable event with what the kernel had. No parsing happens here:
// bytes in, bytes out.
//
//   open(fd, onEvent) -> handle   takes over fd (a connected stream socket); onEvent(chunk) with each
//                                 chunk read; onEvent(null, 0) at end of input, onEvent(null, -errno) on an
//                                 error (no more reads), onEvent(undefined) when queued output has drained
//   write(h, text) -> number      writes text (UTF-8) at once, as far as the kernel takes it, and queues the
//                                 rest (written when the socket is writable); returns the bytes queued
//                                 after the call, or -errno when the connection is broken
//   reading(h, on)                starts or stops reading (output keeps flowing)
//   end(h)                        shutdown(SHUT_WR) once the queue is empty
//   close(h)                      stops watching and closes fd; nothing more is called
//   fd(h) -> number               the descriptor (-1 once closed)
//   peerPid(fd) -> number         the peer's pid (SO_PEERCRED), 0 when unknown
#define NAPI_VERSION 8
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

// One read takes at most this much; more waits for the next readable event (libuv polls level-triggered).
#define READ_MAX 65536

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref on_event;
  napi_async_context async;
  int fd;
  int refs;         // JS's handle and libuv's: freed when both let go
  int events;       // what uv_poll watches now
  int want_read;    // reading asked for by JS
  int read_done;    // end of input or an error seen: never read again
  int end_pending;  // shutdown once the queue is empty
  char *q;          // output the kernel has not taken yet
  size_t q_off, q_len, q_cap;
} conn_t;

static char read_buf[READ_MAX];

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static conn_t *conn_of(napi_env env, napi_value v) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok) return NULL;
  return (conn_t *)p;
}

static void on_poll(uv_poll_t *poll, int status, int events);

static void rewatch(conn_t *c) {
  if (c->fd < 0) return;
  int ev = 0;
  if (c->want_read && !c->read_done) ev |= UV_READABLE;
  if (c->q_len > 0) ev |= UV_WRITABLE;
  if (ev == c->events) return;
  c->events = ev;
  if (ev == 0) uv_poll_stop(&c->poll);
  else uv_poll_start(&c->poll, ev, on_poll);
}

// Calls onEvent(a, b) as a node callback (microtasks and nextTicks run after it, as after any I/O event).
static void emit(conn_t *c, napi_value a, napi_value b) {
  napi_env env = c->env;
  napi_value cb, recv, argv[2] = {a, b}, result;
  if (c->on_event == NULL) return;
  if (napi_get_reference_value(env, c->on_event, &cb) != napi_ok || cb == NULL) return;
  napi_get_global(env, &recv);  // make_callback wants an object as `this`
  if (napi_make_callback(env, c->async, recv, cb, b ? 2 : 1, argv, &result) == napi_pending_exception) {
    napi_value ex;
    napi_get_and_clear_last_exception(env, &ex);
    napi_fatal_exception(env, ex);
  }
}

static void emit_status(conn_t *c, int code) {
  napi_value nul, num;
  napi_get_null(c->env, &nul);
  napi_create_int32(c->env, code, &num);
  emit(c, nul, num);
}

static void do_read(conn_t *c) {
  ssize_t n;
  do n = read(c->fd, read_buf, READ_MAX);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    int code = n == 0 ? 0 : -errno;
    c->read_done = 1;
    rewatch(c);
    emit_status(c, code);
    return;
  }
  napi_value buf;
  if (napi_create_buffer_copy(c->env, (size_t)n, read_buf, NULL, &buf) != napi_ok) return;
  emit(c, buf, NULL);
}

// Writes as much of the queue as the kernel takes; returns 0 or -errno.
static int flush_queue(conn_t *c) {
  while (c->q_len > 0) {
    ssize_t n = send(c->fd, c->q + c->q_off, c->q_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -errno;
    }
    c->q_off += (size_t)n;
    c->q_len -= (size_t)n;
  }
  c->q_off = 0;
  // A burst's queue is not kept for the rest of a long-lived connection (a subscriber's).
  if (c->q_cap > 65536) {
    free(c->q);
    c->q = NULL;
    c->q_cap = 0;
  }
  return 0;
}

static void on_poll(uv_poll_t *poll, int status, int events) {
  conn_t *c = (conn_t *)poll->data;
  napi_handle_scope scope;
  napi_open_handle_scope(c->env, &scope);
  if (status < 0) {
    // The descriptor is in error: report it as a read error (JS closes the connection).
    c->read_done = 1;
    c->q_len = 0;
    rewatch(c);
    emit_status(c, status);
  } else {
    if ((events & UV_WRITABLE) && c->q_len > 0) {
      int r = flush_queue(c);
      if (r < 0) {
        c->q_len = 0;
        c->read_done = 1;
        rewatch(c);
        emit_status(c, r);
      } else if (c->q_len == 0) {
        if (c->end_pending) shutdown(c->fd, SHUT_WR);
        c->end_pending = 0;
        rewatch(c);
        napi_value undef;
        napi_get_undefined(c->env, &undef);
        emit(c, undef, NULL);
      }
    }
    // JS may have closed it in the drain callback.
    if (c->fd >= 0 && (events & UV_READABLE) && c->want_read && !c->read_done) do_read(c);
  }
  napi_close_handle_scope(c->env, scope);
}

static void unref(conn_t *c) {
  if (--c->refs > 0) return;
  free(c->q);
  free(c);
}

static void on_closed(uv_handle_t *h) { unref((conn_t *)h->data); }

static void close_conn(napi_env env, conn_t *c) {
  if (c->fd < 0) return;
  uv_poll_stop(&c->poll);
  close(c->fd);
  c->fd = -1;
  c->q_len = 0;
  napi_delete_reference(env, c->on_event);
  c->on_event = NULL;
  napi_async_destroy(env, c->async);
  uv_close((uv_handle_t *)&c->poll, on_closed);
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  conn_t *c = (conn_t *)data;
  close_conn(env, c);  // collected without close(): a leak of JS's, not of descriptors
  unref(c);
}

static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2) return throw_type(env, "open(fd, onEvent)");
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return throw_type(env, "fd must be a descriptor");
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) return throw_type(env, "onEvent must be a function");
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return throw_type(env, "fd is not usable");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_type(env, "no event loop");
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return throw_type(env, "out of memory");
  c->env = env;
  c->fd = fd;
  c->want_read = 1;
  c->refs = 2;
  if (uv_poll_init_socket(loop, &c->poll, fd) != 0) {
    free(c);
    return throw_type(env, "fd cannot be watched");
  }
  c->poll.data = c;
  napi_create_reference(env, argv[1], 1, &c->on_event);
  napi_value name;
  napi_create_string_utf8(env, "openauto-transport", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &c->async);
  rewatch(c);
  napi_value ext;
  napi_create_external(env, c, finalize, NULL, &ext);
  return ext;
}

static napi_value Write(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], ret;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t *c = argc == 2 ? conn_of(env, argv[0]) : NULL;
  if (!c) return throw_type(env, "write(handle, text)");
  size_t len;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &len) != napi_ok) return throw_type(env, "text must be a string");
  if (c->fd < 0) {
    napi_create_int32(env, -EBADF, &ret);
    return ret;
  }
  char stackbuf[4096];
  char *buf = len < sizeof stackbuf ? stackbuf : malloc(len + 1);
  if (!buf) return throw_type(env, "out of memory");
  napi_get_value_string_utf8(env, argv[1], buf, len + 1, &len);
  size_t done = 0;
  int err = 0;
  if (c->q_len == 0) {
    while (done < len) {
      ssize_t n = send(c->fd, buf + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) err = -errno;
        break;
      }
      done += (size_t)n;
    }
  }
  if (!err && done < len) {
    size_t rest = len - done;
    if (c->q_off + c->q_len + rest > c->q_cap) {
      // Compact, then grow.
      if (c->q_len > 0) memmove(c->q, c->q + c->q_off, c->q_len);
      c->q_off = 0;
      if (c->q_len + rest > c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap : 16384;
        while (cap < c->q_len + rest) cap *= 2;
        char *q = realloc(c->q, cap);
        if (!q) err = -ENOMEM;
        else {
          c->q = q;
          c->q_cap = cap;
        }
      }
    }
    if (!err) {
      memcpy(c->q + c->q_off + c->q_len, buf + done, rest);
      c->q_len += rest;
      rewatch(c);
    }
  }
  if (buf != stackbuf) free(buf);
  napi_create_double(env, err ? (double)err : (double)c->q_len, &ret);
  return ret;
}

static napi_value Reading(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t *c = argc == 2 ? conn_of(env, argv[0]) : NULL;
  bool on;
  if (!c || napi_get_value_bool(env, argv[1], &on) != napi_ok) return throw_type(env, "reading(handle, on)");
  c->want_read = on;
  rewatch(c);
  return NULL;
}

static napi_value End(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t *c = argc == 1 ? conn_of(env, argv[0]) : NULL;
  if (!c) return throw_type(env, "end(handle)");
  if (c->fd < 0) return NULL;
  if (c->q_len == 0) shutdown(c->fd, SHUT_WR);
  else c->end_pending = 1;
  return NULL;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t *c = argc == 1 ? conn_of(env, argv[0]) : NULL;
  if (!c) return throw_type(env, "close(handle)");
  // The struct lives until libuv is done with the handle and JS has let go of it (finalize).
  close_conn(env, c);
  return NULL;
}

static napi_value Fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ret;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  conn_t *c = argc == 1 ? conn_of(env, argv[0]) : NULL;
  if (!c) return throw_type(env, "fd(handle)");
  napi_create_int32(env, c->fd, &ret);
  return ret;
}

static napi_value PeerPid(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ret;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_type(env, "peerPid(fd)");
  struct ucred cred;
  socklen_t len = sizeof cred;
  int pid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? (int)cred.pid : 0;
  napi_create_int32(env, pid, &ret);
  return ret;
}

static napi_value Dup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], ret;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok) return throw_type(env, "dup(fd)");
  int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  napi_create_int32(env, r < 0 ? -errno : r, &ret);
  return ret;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, Open, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, Write, NULL, NULL, NULL, napi_default, NULL},
      {"reading", NULL, Reading, NULL, NULL, NULL, napi_default, NULL},
      {"end", NULL, End, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_default, NULL},
      {"fd", NULL, Fd, NULL, NULL, NULL, napi_default, NULL},
      {"peerPid", NULL, PeerPid, NULL, NULL, NULL, napi_default, NULL},
      {"dup", NULL, Dup, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
