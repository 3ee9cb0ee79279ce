// The kernel's floor for one small WebSocket-sized write per viewer on loopback.
//
// N TCP connections over 127.0.0.1. A sender process writes MSG bytes to each
// connection in turn (one write() per connection, like one event delivered to each
// viewer of a room), ROUNDS times, GAP_MS apart. A receiver process waits in epoll and
// reads each connection (one read() per delivery, like a viewer). Each side prints the
// CPU it used (user + system, from getrusage) per delivery. With GROUP, each round
// writes only the next GROUP connections (one room of many: 5000 40 110 100 is the
// huge room, 5000 5000 110 2 50 the many-rooms scenario's 100 rooms of 50 at 500/s).
//
// No Rust, no runtime, no framing: what is left is the kernel's work per write and per
// read, which is the least any gateway and any load generator pay on this machine.
//
//   cc -O2 -o floor floor.c && ./floor 5000 40 110 100
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include "floor.h"

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s CONNECTIONS ROUNDS MSG_BYTES GAP_MS [GROUP]\n", argv[0]);
    return 2;
  }
  int n = atoi(argv[1]), rounds = atoi(argv[2]), msg = atoi(argv[3]), gap_ms = atoi(argv[4]);
  // Each round writes GROUP connections (a room), the next GROUP the next round.
  int group = argc > 5 ? atoi(argv[5]) : n;
  if (group < 1 || group > n) group = n;
  int one = 1;
  struct sockaddr_in a;
  int ls = listen_loopback(SOCK_STREAM, 65535, &a);
  if (ls < 0) return 1;
  int *client = malloc(n * sizeof(int)), *server = malloc(n * sizeof(int));
  for (int i = 0; i < n; i++) {
    client[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(client[i], (void *)&a, sizeof a)) {
      perror("connect");
      return 1;
    }
    server[i] = accept(ls, 0, 0);
    setsockopt(server[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  long deliveries = (long)group * rounds;
  pid_t pid = fork();
  if (pid == 0) { // the receiver: a viewer per connection, one epoll
    for (int i = 0; i < n; i++) close(server[i]);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
      fcntl(client[i], F_SETFL, O_NONBLOCK);
      struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.fd = client[i]};
      epoll_ctl(ep, EPOLL_CTL_ADD, client[i], &e);
    }
    long want = deliveries * msg, got = 0;
    char buf[4096];
    struct epoll_event ev[512];
    double c0 = cpu_s();
    while (got < want) {
      int k = epoll_wait(ep, ev, 512, 5000);
      if (k <= 0) break;
      for (int j = 0; j < k; j++) {
        ssize_t r = read(ev[j].data.fd, buf, sizeof buf);
        if (r > 0) got += r;
      }
    }
    printf("receiver: %.2f us CPU per delivery (%d connections, %d a round)\n",
           (cpu_s() - c0) * 1e6 / deliveries, n, group);
    return got == want ? 0 : 1;
  }
  for (int i = 0; i < n; i++) close(client[i]);
  char *buf = calloc(1, msg);
  usleep(200000);
  double c0 = cpu_s();
  for (int r = 0, next = 0; r < rounds; r++) {
    for (int i = 0; i < group; i++, next = (next + 1) % n)
      if (write(server[next], buf, msg) != msg) perror("write");
    if (gap_ms) usleep(gap_ms * 1000);
  }
  printf("sender:   %.2f us CPU per delivery (%d connections, %d a round)\n",
         (cpu_s() - c0) * 1e6 / deliveries, n, group);
  fflush(stdout);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
