// What the floor programs share: CPU and clock readings, sorting for percentiles, and
// a listening socket on an ephemeral loopback port.
#ifndef DANMAKU_FLOOR_H
#define DANMAKU_FLOOR_H

#include <netinet/in.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

// This process's CPU seconds (user + system).
static inline double cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

// Monotonic microseconds (the same clock in every process of the machine).
static inline long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000L + t.tv_nsec / 1000;
}

static inline double now_ms(void) { return now_us() / 1e3; }

// qsort comparators.
static inline int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static inline int cmp_long(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

// A socket of `type` (SOCK_STREAM, maybe | SOCK_NONBLOCK) listening on 127.0.0.1 at an
// ephemeral port, written to `a`; -1 (after perror) when it cannot be had.
static inline int listen_loopback(int type, int backlog, struct sockaddr_in *a) {
  int one = 1, ls = socket(AF_INET, type, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  *a = (struct sockaddr_in){0};
  a->sin_family = AF_INET;
  a->sin_addr.s_addr = htonl(0x7f000001);
  socklen_t al = sizeof *a;
  if (ls < 0 || bind(ls, (void *)a, sizeof *a) || listen(ls, backlog) ||
      getsockname(ls, (void *)a, &al)) {
    perror("listen");
    return -1;
  }
  return ls;
}

#endif
