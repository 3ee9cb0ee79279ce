// A TCP proxy in front of a gateway, for tests that force disconnects the way a network
// does (no close frame): `cut()` drops every connection through it, `block(true)` drops
// new ones at once (the gateway looks unreachable), `freeze()` stops the open ones
// carrying anything without closing them, `thaw()` lets them carry again.
import { once } from "node:events";
import net from "node:net";

/**
 * @param {string} target "host:port"
 * @returns {Promise<{port: number, cut(): number, block(on: boolean): void, freeze(): void, thaw(): void, close(): Promise<void>}>}
 */
export async function startProxy(target) {
  const [host, port] = target.split(":");
  const sockets = new Set();
  let blocked = false;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const cut = () => {
    const n = sockets.size;
    for (const s of sockets) s.destroy();
    return n;
  };
  return {
    port: server.address().port,
    cut,
    block: (on) => {
      blocked = on;
    },
    freeze: () => sockets.forEach((s) => s.pause()),
    thaw: () => sockets.forEach((s) => s.resume()),
    close: async () => {
      cut();
      server.close();
      await once(server, "close");
    },
  };
}
