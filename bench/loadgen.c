/*
 * The benchmarks' concurrent socket load: CLIENTS connections to a Unix socket, each sending one request
 * line and the next as soon as its answer is in, until each has had PER_CLIENT answers. In C, with one
 * epoll loop, so the load generator costs a fraction of what a server does per request: with node's streams
 * (bench/socket-client.ts) the client took as much CPU as the servers, and on two vCPUs the figure was the
 * client's limit as much as the server's. Counts answers whose line holds "error" (a bench fails on any).
 *
 *   loadgen SOCKET CLIENTS PER_CLIENT METHOD
 * METHOD "mixed" sends get_health, get_status and ping in turn on each connection (the sequential run: one
 * client). Waits block in epoll_wait, as an event-driven client's do: no spinning.
 * First every connection is opened and answers one ping, all at once (a server's per-connection work:
 * accepting, the fd store...); then the clock starts for PER_CLIENT requests per connection.
 * Prints {"open_seconds":O,"seconds":S,"answers":N,"errors":E,"bytes":B}: O from the first connect to the
 * last first answer; S from the first request after that to the last answer; N, E and B (the answer bytes,
 * newlines included) count the timed requests only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *const MIXED[] = {"get_health", "get_status", "ping"};

typedef struct {
  int fd;
  const char *method; /* NULL: MIXED in turn */
  long sent, answered;
  char req[128];
  size_t req_len;
  char line[48]; /* the start of the answer being read, to tell errors */
  size_t line_len;
} conn_t;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Waits up to 10 s for readable connections (dies otherwise, saying `waiting_for`); returns how many. */
static int wait_readable(int ep, struct epoll_event *events, int max, const char *waiting_for) {
  for (;;) {
    int n = epoll_wait(ep, events, max, 10000);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait");
    if (n == 0) {
      errno = ETIMEDOUT;
      die(waiting_for);
    }
    return n;
  }
}

/* What a readable connection has: the bytes read into buf, 0 when nothing after all; dies when the server
 * closed it. */
static ssize_t read_some(conn_t *c, char *buf, size_t size) {
  ssize_t r = recv(c->fd, buf, size, MSG_DONTWAIT);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (r <= 0) die("the server closed a connection");
  return r;
}

static void send_request(conn_t *c) {
  if (!c->method) {
    int len = snprintf(c->req, sizeof c->req, "{\"id\":%ld,\"method\":\"%s\"}\n", c->sent, MIXED[c->sent % 3]);
    if (len <= 0 || len >= (int)sizeof c->req) die("request too long");
    c->req_len = (size_t)len;
  }
  ssize_t n = send(c->fd, c->req, c->req_len, MSG_NOSIGNAL);
  if (n != (ssize_t)c->req_len) die("send");
  c->sent++;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: loadgen SOCKET CLIENTS PER_CLIENT METHOD\n");
    return 2;
  }
  const char *path = argv[1];
  int clients = atoi(argv[2]);
  long per_client = atol(argv[3]);
  const char *method = argv[4];
  if (clients <= 0 || per_client <= 0 || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "loadgen: bad arguments\n");
    return 2;
  }
  conn_t *conns = calloc((size_t)clients, sizeof(conn_t));
  int ep = epoll_create1(0);
  if (!conns || ep < 0) die("setup");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strcpy(addr.sun_path, path);
  double topen = now();
  for (int i = 0; i < clients; i++) {
    conn_t *c = &conns[i];
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect");
    c->method = strcmp(method, "mixed") == 0 ? NULL : method;
    if (c->method) {
      int len = snprintf(c->req, sizeof c->req, "{\"id\":\"%d\",\"method\":\"%s\"}\n", i, method);
      if (len <= 0 || len >= (int)sizeof c->req) die("request too long");
      c->req_len = (size_t)len;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
    static const char ping[] = "{\"id\":\"open\",\"method\":\"ping\"}\n";
    if (send(c->fd, ping, sizeof ping - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof ping - 1)) die("send");
  }
  struct epoll_event events[64];
  char buf[65536];
  /* Each connection's first answer (one line, the ping's). */
  for (int waiting = clients; waiting > 0;) {
    int n = wait_readable(ep, events, 64, "no first answer within 10 s");
    for (int k = 0; k < n; k++) {
      conn_t *c = events[k].data.ptr;
      ssize_t r = read_some(c, buf, sizeof buf);
      if (r == 0) continue;
      if (memchr(buf, '\n', (size_t)r) != buf + r - 1) die("the first answer is not one line");
      if (memmem(buf, (size_t)r, "\"error\"", 7)) die("the first ping was refused");
      waiting--;
    }
  }
  double open_s = now() - topen;
  long errors = 0, total = 0, bytes = 0;
  int open = clients;
  double t0 = now();
  for (int i = 0; i < clients; i++) send_request(&conns[i]);
  while (open > 0) {
    int n = wait_readable(ep, events, 64, "no answer within 10 s");
    for (int k = 0; k < n; k++) {
      conn_t *c = events[k].data.ptr;
      ssize_t r = read_some(c, buf, sizeof buf);
      if (r == 0) continue;
      bytes += r;
      for (ssize_t j = 0; j < r; j++) {
        if (buf[j] != '\n') {
          if (c->line_len < sizeof c->line) c->line[c->line_len++] = buf[j];
          continue;
        }
        /* {"id":"N","error":… : the member after the id says which. */
        if (memmem(c->line, c->line_len, "\"error\"", 7) || c->line_len < 8) errors++;
        c->line_len = 0;
        c->answered++;
        total++;
      }
      if (c->answered < c->sent) continue;
      if (c->sent < per_client) {
        send_request(c);
      } else {
        close(c->fd);
        open--;
      }
    }
  }
  printf("{\"open_seconds\":%.6f,\"seconds\":%.6f,\"answers\":%ld,\"errors\":%ld,\"bytes\":%ld}\n", open_s, now() - t0, total, errors, bytes);
  return 0;
}
