// The kernel's floor for opening viewers as fast as possible on loopback: the `ramp`
// scenario's shape with nothing but the kernel and one epoll loop on each side.
//
// A server process (one thread, one epoll) accepts connections; on each it reads the
// HTTP upgrade request and answers with the 101 response and `hello` in one write,
// then reads `join` and answers `joined` (a snapshot-sized message). A client process
// (one thread, one epoll) opens TOTAL connections, at most IN_FLIGHT at a time: a
// non-blocking connect, the request, then `join` once the 101 and `hello` are in.
// Time to first render is from the connect to the `joined` bytes, as the load test
// measures it. No HTTP parsing, no JSON, no WebSocket framing, no tokens: what is left
// is the kernel's TCP handshake, accept, epoll registration and four small messages,
// which is the least any gateway and any load generator pay here per viewer.
//
//   cc -O2 -o ramp_floor ramp_floor.c && ./ramp_floor 10000 2000
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "floor.h"

// Sizes of what our gateway and load test exchange.
enum { REQUEST = 260, UPGRADE_AND_HELLO = 230, JOIN = 45, JOINED = 330 };

static char buf[4096];

static void server(int ls, int total) {
  int ep = epoll_create1(0), one = 1, done = 0;
  char *state = calloc(1 << 20, 1);
  struct epoll_event e = {.events = EPOLLIN, .data.fd = ls}, ev[512];
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
  double c0 = cpu_s();
  while (done < total) {
    int k = epoll_wait(ep, ev, 512, 5000);
    if (k <= 0) break;
    for (int j = 0; j < k; j++) {
      int fd = ev[j].data.fd;
      if (fd == ls) {
        int c;
        while ((c = accept4(ls, 0, 0, SOCK_NONBLOCK)) >= 0) {
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      if (read(fd, buf, sizeof buf) <= 0) continue;
      if (state[fd] == 0) {
        state[fd] = 1;
        if (write(fd, buf, UPGRADE_AND_HELLO) < 0) perror("write");
      } else if (state[fd] == 1) {
        state[fd] = 2;
        if (write(fd, buf, JOINED) < 0) perror("write");
        done++;
      }
    }
  }
  printf("server: %.1f us CPU per connection\n", (cpu_s() - c0) * 1e6 / total);
}

static int client(struct sockaddr_in *a, int total, int in_flight) {
  int ep = epoll_create1(0), opened = 0, done = 0, flying = 0;
  char *state = calloc(1 << 20, 1);
  double *t0 = calloc(1 << 20, sizeof(double)), *lat = calloc(total, sizeof(double));
  struct epoll_event ev[512];
  double c0 = cpu_s(), w0 = now_ms();
  while (done < total) {
    while (flying < in_flight && opened < total) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (c < 0 || (connect(c, (void *)a, sizeof *a) < 0 && errno != EINPROGRESS)) {
        perror("connect");
        return 1;
      }
      t0[c] = now_ms();
      state[c] = 0;
      struct epoll_event ce = {.events = EPOLLOUT, .data.fd = c};
      epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
      opened++, flying++;
    }
    int k = epoll_wait(ep, ev, 512, 5000);
    if (k <= 0) break;
    for (int j = 0; j < k; j++) {
      int fd = ev[j].data.fd;
      if (state[fd] == 0) { // connected: send the upgrade request, wait for the answer
        state[fd] = 1;
        if (write(fd, buf, REQUEST) < 0) perror("write");
        struct epoll_event ce = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
      } else if (read(fd, buf, sizeof buf) > 0) {
        if (state[fd] == 1) { // 101 and hello: join
          state[fd] = 2;
          if (write(fd, buf, JOIN) < 0) perror("write");
        } else if (state[fd] == 2) { // joined: rendered
          state[fd] = 3;
          lat[done++] = now_ms() - t0[fd];
          flying--;
          epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0);
        }
      }
    }
  }
  double wall = now_ms() - w0;
  qsort(lat, done, sizeof(double), cmp_double);
  printf("client: %.1f us CPU per connection\n", (cpu_s() - c0) * 1e6 / total);
  printf("ramp: %d joined in %.2f s; first render p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", done,
         wall / 1e3, lat[done / 2], lat[done * 99 / 100], lat[done - 1]);
  return done == total ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s TOTAL IN_FLIGHT\n", argv[0]);
    return 2;
  }
  int total = atoi(argv[1]), in_flight = atoi(argv[2]);
  struct sockaddr_in a;
  int ls = listen_loopback(SOCK_STREAM | SOCK_NONBLOCK, 16384, &a);
  if (ls < 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    server(ls, total);
    fflush(stdout);
    return 0;
  }
  close(ls);
  int rc = client(&a, total, in_flight);
  fflush(stdout);
  int status = 0;
  waitpid(pid, &status, 0);
  return rc;
}
