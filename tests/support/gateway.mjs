// A gateway process for the browser tests, and the viewer tokens they sign.
import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";

/** A viewer token (HS256) for `sub` and `name`, valid ten minutes. */
export function viewerToken(secret, sub, name) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub, name, exp: Math.floor(Date.now() / 1000) + 600 });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/**
 * Starts `bin` on an ephemeral loopback port with `args`; `addr` ("host:port", from the
 * banner's first line) once it listens, rejected if it has not within 10 s.
 * @returns {{child: import("node:child_process").ChildProcess, addr: Promise<string>, kill(): void}}
 */
export function startGateway(bin, args) {
  const child = spawn(bin, ["--listen", "127.0.0.1:0", "--log", "warn", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const addr = Promise.race([
    once(child.stdout, "data"),
    new Promise((_, reject) => setTimeout(() => reject(new Error("gateway did not start")), 10_000).unref()),
  ]).then(([line]) => line.toString().split("\n")[0].trim().split(/\s+/).pop());
  addr.catch(() => {});
  return { child, addr, kill: () => child.kill() };
}

/**
 * The HTTP API of the gateway at `addr` with `key`: `api(method, path, body?)` resolves
 * with the JSON answer, and throws unless it is a 200.
 */
export function apiClient(addr, key) {
  return async (method, path, body) => {
    const res = await fetch(`http://${addr}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  };
}
