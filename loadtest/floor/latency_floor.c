// The kernel's floor for end-to-end latency on loopback: N viewers over R rooms of Zipf
// sizes (s = 1, sized as the load test sizes them; one room of N when R is 1), RATE
// events per second, rooms taking their turns in the load test's golden-ratio order.
//
// A sender process with 2 threads (as the gateway has 2 workers on 2 cores) writes
// each event to its room's connections, one write() each, each thread half of them.
// A receiver process (one thread, one epoll, as the load generator's reader) reads
// them. Every 110-byte message carries the time its event was due; the receiver
// prints the latency percentiles over every delivery. No HTTP, no JSON, no framing:
// the p99 here is what the kernel and the scheduler alone allow on this machine.
//
//   cc -O2 -pthread -o latency_floor latency_floor.c -lm
//   ./latency_floor 5000 1 10 20          # the huge room
//   ./latency_floor 10000 1000 1000 20    # the Zipf scenario
#define _GNU_SOURCE
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

enum { MSG = 110 };

#include "floor.h"

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

static int n, rooms, rate, seconds;
static int *room_start, *room_size, *order, *server;
static long t0;

// Sender thread `j` writes its half (every other viewer) of each due event's room.
static void *sender(void *arg) {
  int j = (int)(long)arg;
  char buf[MSG] = {0};
  long events = (long)rate * seconds;
  for (long k = 0; k < events; k++) {
    long due = t0 + k * 1000000L / rate;
    struct timespec at = {due / 1000000L, (due % 1000000L) * 1000};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, 0);
    memcpy(buf, &due, sizeof due);
    int r = order[k % rooms];
    for (int i = room_start[r] + j; i < room_start[r] + room_size[r]; i += 2)
      if (write(server[i], buf, MSG) != MSG) perror("write");
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s VIEWERS ROOMS RATE SECONDS\n", argv[0]);
    return 2;
  }
  n = atoi(argv[1]), rooms = atoi(argv[2]), rate = atoi(argv[3]), seconds = atoi(argv[4]);
  // Room sizes: floor(N / (H_R · (r+1))), at least 1, trimmed at the largest to sum N.
  room_size = calloc(rooms, sizeof(int)), room_start = calloc(rooms, sizeof(int));
  double h = 0;
  for (int r = 0; r < rooms; r++) h += 1.0 / (r + 1);
  int sum = 0;
  for (int r = 0; r < rooms; r++) {
    room_size[r] = (int)floor(n / (h * (r + 1)));
    if (room_size[r] < 1) room_size[r] = 1;
    sum += room_size[r];
  }
  for (; sum > n; sum--) {
    int big = 0;
    for (int r = 1; r < rooms; r++)
      if (room_size[r] > room_size[big]) big = r;
    room_size[big]--;
  }
  for (int r = 0; sum < n; r = (r + 1) % rooms, sum++) room_size[r]++;
  for (int r = 1; r < rooms; r++) room_start[r] = room_start[r - 1] + room_size[r - 1];
  // The load test's publish order: room r takes its turn at r·stride mod R.
  order = calloc(rooms, sizeof(int));
  int stride = (int)lround(rooms / 1.618034);
  while (rooms > 2 && gcd(stride, rooms) != 1) stride++;
  for (int r = 0; r < rooms; r++) order[rooms > 2 ? (long)r * stride % rooms : r] = r;

  int one = 1;
  struct sockaddr_in a;
  int ls = listen_loopback(SOCK_STREAM, 65535, &a);
  if (ls < 0) return 1;
  long deliveries = 0;
  for (long k = 0; k < (long)rate * seconds; k++) deliveries += room_size[order[k % rooms]];
  // Each side holds one end of every connection (one process may hold 20,000 files).
  pid_t pid = fork();
  if (pid == 0) { // the receiver
    close(ls);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
      int c = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(c, (void *)&a, sizeof a)) {
        perror("connect");
        return 1;
      }
      fcntl(c, F_SETFL, O_NONBLOCK);
      struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = c};
      epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
    }
    long *lat = malloc(deliveries * sizeof(long)), got = 0;
    char buf[4096];
    struct epoll_event ev[512];
    while (got < deliveries) {
      int k = epoll_wait(ep, ev, 512, 5000);
      if (k <= 0) break;
      for (int j = 0; j < k; j++) {
        ssize_t r = read(ev[j].data.fd, buf, sizeof buf);
        long now = now_us();
        for (ssize_t off = 0; off + MSG <= r && got < deliveries; off += MSG) {
          long due;
          memcpy(&due, buf + off, sizeof due);
          lat[got++] = now - due;
        }
      }
    }
    qsort(lat, got, sizeof(long), cmp_long);
    printf("latency (%d viewers, %d rooms, the biggest %d, %d events/s): p50 %.2f ms, "
           "p90 %.2f ms, p99 %.2f ms, max %.2f ms over %ld deliveries\n",
           n, rooms, room_size[0], rate, lat[got / 2] / 1e3, lat[got * 9 / 10] / 1e3,
           lat[got * 99 / 100] / 1e3, lat[got - 1] / 1e3, got);
    return got == deliveries ? 0 : 1;
  }
  server = malloc(n * sizeof(int));
  for (int i = 0; i < n; i++) {
    server[i] = accept(ls, 0, 0);
    setsockopt(server[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  t0 = now_us() + 300000;
  pthread_t th[2];
  for (long j = 0; j < 2; j++) pthread_create(&th[j], 0, sender, (void *)j);
  for (int j = 0; j < 2; j++) pthread_join(th[j], 0);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
