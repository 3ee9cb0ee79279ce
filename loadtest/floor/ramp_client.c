// Opens viewers against a real gateway the way ramp_floor.c's client does: one thread,
// one epoll loop, a real upgrade request (with a token), a masked `join`, and time to
// first render from the connect to the `joined` bytes. TOTAL connections, IN_FLIGHT at
// a time. It separates the gateway's share of the ramp scenario's figures from the load
// generator's: scripts/ramp_client.sh runs it against a fresh gateway.
//
//   cc -O2 -o ramp_client ramp_client.c && ./ramp_client PORT TOTAL IN_FLIGHT TOKEN
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "floor.h"

// Where a connection is: connecting, upgrade sent, `join` sent, joined.
enum { CONNECTING, UPGRADING, JOINING, JOINED };

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s PORT TOTAL IN_FLIGHT TOKEN\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]), total = atoi(argv[2]), in_flight = atoi(argv[3]);
  char req[2048];
  int req_len = snprintf(req, sizeof req,
                         "GET /ws?token=%s HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: danmaku.v1\r\n\r\n",
                         argv[4]);
  // `join` as a masked text frame.
  const char *payload = "{\"type\":\"join\",\"id\":1,\"room\":\"cfloor\"}";
  int payload_len = strlen(payload);
  unsigned char join[256] = {0x81, 0x80 | payload_len, 1, 2, 3, 4};
  for (int i = 0; i < payload_len; i++) join[6 + i] = payload[i] ^ join[2 + i % 4];
  int join_len = 6 + payload_len;

  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(0x7f000001);
  int ep = epoll_create1(0), opened = 0, done = 0, flying = 0, one = 1;
  char *state = calloc(1 << 20, 1);
  double *t0 = calloc(1 << 20, sizeof(double)), *lat = calloc(total, sizeof(double));
  struct epoll_event ev[512];
  char buf[8192];
  double c0 = cpu_s(), w0 = now_ms();
  while (done < total) {
    while (flying < in_flight && opened < total) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      if (c < 0 || (connect(c, (void *)&a, sizeof a) < 0 && errno != EINPROGRESS)) {
        perror("connect");
        return 1;
      }
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      t0[c] = now_ms();
      state[c] = CONNECTING;
      struct epoll_event ce = {.events = EPOLLOUT, .data.fd = c};
      epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
      opened++, flying++;
    }
    int k = epoll_wait(ep, ev, 512, 5000);
    if (k <= 0) {
      fprintf(stderr, "stalled at %d joined\n", done);
      break;
    }
    for (int j = 0; j < k; j++) {
      int fd = ev[j].data.fd;
      if (state[fd] == CONNECTING) {
        state[fd] = UPGRADING;
        if (write(fd, req, req_len) < 0) perror("write");
        struct epoll_event ce = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ce);
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r <= 0) continue;
      if (state[fd] == UPGRADING && memmem(buf, r, "\r\n\r\n", 4)) {
        state[fd] = JOINING;
        if (write(fd, join, join_len) < 0) perror("write");
      }
      if (state[fd] == JOINING && memmem(buf, r, "\"joined\"", 8)) {
        state[fd] = JOINED;
        lat[done++] = now_ms() - t0[fd];
        flying--;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, 0);
      }
    }
  }
  double wall = now_ms() - w0;
  if (done == 0) return 1;
  qsort(lat, done, sizeof(double), cmp_double);
  printf("c-client: %.1f us CPU/conn; %d joined in %.2f s; first render p50 %.1f p90 %.1f p99 "
         "%.1f max %.1f ms\n",
         (cpu_s() - c0) * 1e6 / total, done, wall / 1e3, lat[done / 2], lat[done * 9 / 10],
         lat[done * 99 / 100], lat[done - 1]);
  return done == total ? 0 : 1;
}
