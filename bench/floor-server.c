/*
 * The floor for the sequential socket figure: a server that answers each request line of the legacy socket
 * with fixed bytes, in C, one epoll loop, no parsing beyond finding the method. No server can answer a round
 * trip faster on the same machine, so what a round trip to it costs is what no server can remove: the
 * kernel's socket work and, between two CPUs, waking the other one (on an idle VM, a halted vCPU that the
 * hypervisor must wake). bench/agent.ts `floor` times the sequential run against it placed freely and on
 * one CPU, beside the same runs against the daemon and the Python baseline (bench/versus.ts).
 *
 *   floor-server SOCKET      serves until killed; prints "ready" once listening
 *
 * Answers: get_status -> a result of about 2 KB (like the baseline's), get_health -> the three services'
 * states, anything else -> "pong". Not a copy of either server's answers: only their sizes matter here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "floor-server: %s: %s\n", what, strerror(errno));
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 2 || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "usage: floor-server SOCKET\n");
    return 2;
  }
  static char status[2048];
  memset(status, 'x', sizeof status - 1);
  status[0] = '"';
  status[sizeof status - 2] = '"';
  const char *health = "{\"hostapd\":\"active\",\"networkd\":\"active\",\"bluetooth\":\"active\"}";
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strcpy(a.sun_path, argv[1]);
  unlink(argv[1]);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 128) != 0) die("listen");
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = l};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev) != 0) die("epoll");
  printf("ready\n");
  fflush(stdout);
  static char in[65536], out[65536 * 4];
  for (;;) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == l) {
        int c = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
        if (c >= 0) epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        continue;
      }
      ssize_t r = read(fd, in, sizeof in);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close(fd);
        continue;
      }
      /* Whole lines only (the benchmark's requests are short and sent one at a time per connection). */
      size_t o = 0;
      for (char *p = in, *end = in + r; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        const char *m = memmem(p, (size_t)(nl - p), "\"method\":\"", 10);
        const char *body = "\"pong\"";
        if (m && strncmp(m + 10, "get_status", 10) == 0) body = status;
        else if (m && strncmp(m + 10, "get_health", 10) == 0) body = health;
        if (o + strlen(body) + 64 > sizeof out) break;
        o += (size_t)sprintf(out + o, "{\"id\":0,\"result\":%s}\n", body);
        p = nl + 1;
      }
      if (o > 0 && send(fd, out, o, MSG_NOSIGNAL) < 0 && errno != EAGAIN) close(fd);
    }
  }
}
