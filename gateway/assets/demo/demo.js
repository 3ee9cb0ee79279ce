// The gateway's demo live room, built on the web SDK (/demo/danmaku.js is its bundle).
// The room comes from ?room= (default "demo"), the viewer token from ?token= (without
// one the viewer is anonymous and read-only, where the gateway allows it).
import { DanmakuClient, isKind, verifyLottery } from "/demo/danmaku.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "demo";
const token = params.get("token") || undefined;
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};

// --- state the page renders -------------------------------------------------------------
const view = {
  likes: 0,
  online: 0,
  polls: new Map(),
  coupons: new Map(),
  quizzes: new Map(),
  lotteries: new Map(),
  stage: null,
  claimed: new Map(),
  me: undefined,
  serverOffset: 0,
};

// Exposed for the browser tests (and the curious): what the page has been told.
window.demo = { room, seqs: [], skipped: [], snapshots: 0, view, client: undefined };

function notice(text) {
  $("notice").textContent = text;
}

// --- danmaku over the video: lanes without overlap --------------------------------------
const LANES = 8;
const SPEED = 140; // px per second, the same for every line, so none catches up another
const GAP = 24; // px between two lines of a lane
const laneFreeAt = new Array(LANES).fill(0);
const waiting = [];
const MAX_WAITING = 300; // beyond, the oldest waiting line is dropped (a flood reads as a flood)

function fly(content, className, seq) {
  waiting.push({ content, className, seq });
  if (waiting.length > MAX_WAITING) waiting.shift();
  pump();
}

function pump() {
  const now = performance.now();
  const lanes = $("lanes");
  const width = lanes.clientWidth || 640;
  const laneHeight = (lanes.clientHeight || 300) / LANES;
  while (waiting.length > 0) {
    const lane = laneFreeAt.findIndex((t) => t <= now);
    if (lane < 0) break;
    const { content, className, seq } = waiting.shift();
    const node = el("span", { className: `dm ${className}` });
    node.append(...content);
    if (seq !== undefined) node.dataset.seq = String(seq);
    node.style.top = `${lane * laneHeight + 6}px`;
    node.style.transform = `translateX(${width}px)`;
    lanes.append(node);
    const own = node.offsetWidth;
    // The lane is free again once this line's tail is GAP px inside the right edge.
    laneFreeAt[lane] = now + ((own + GAP) / SPEED) * 1000;
    const duration = ((width + own) / SPEED) * 1000;
    const run = node.animate(
      [{ transform: `translateX(${width}px)` }, { transform: `translateX(${-own}px)` }],
      { duration, easing: "linear" },
    );
    run.onfinish = () => node.remove();
  }
  if (waiting.length > 0) setTimeout(pump, 50);
}

// --- likes: taps batched into one command, a burst of hearts each ------------------------
let tapped = 0;
let tapTimer;
function burst() {
  const heart = el("span", { className: "heart", textContent: ["❤", "💖", "💗", "✨"][Math.floor(Math.random() * 4)] });
  heart.style.setProperty("--dx", `${Math.round(Math.random() * 60 - 30)}px`);
  heart.style.left = `${Math.round(Math.random() * 30)}px`;
  $("bursts").append(heart);
  heart.addEventListener("animationend", () => heart.remove());
}
$("like").addEventListener("click", () => {
  burst();
  tapped += 1;
  if (tapTimer !== undefined) return;
  tapTimer = setTimeout(async () => {
    const count = Math.min(tapped, 100);
    tapped = 0;
    tapTimer = undefined;
    try {
      await client.like(room, count);
    } catch (e) {
      notice(`like: ${e.code ?? ""} ${e.message}`);
    }
  }, 200);
});

// --- the panels -------------------------------------------------------------------------
const serverNow = () => Date.now() + view.serverOffset;
function remaining(endsAt) {
  const s = Math.max(0, Math.round((endsAt - serverNow()) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function renderStage() {
  const box = $("product");
  const stage = view.stage;
  box.hidden = stage === null;
  if (stage === null) return;
  const product = stage.product && typeof stage.product === "object" ? stage.product : { name: String(stage.product) };
  box.replaceChildren(
    el("h3", { textContent: "On stage" }),
    stage.label ? el("span", { className: "label", textContent: stage.label }) : "",
    el("div", { className: "name", textContent: product.name ?? product.title ?? product.sku ?? "product" }),
    product.price !== undefined ? el("div", { className: "price", textContent: `¥${product.price}` }) : "",
    stage.ends_at ? el("div", { className: "countdown", id: "stage-countdown", textContent: `ends in ${remaining(stage.ends_at)}` }) : "",
  );
}

function renderPolls() {
  $("polls").replaceChildren(
    ...[...view.polls.values()].map((p) => {
      const total = p.options.reduce((n, o) => n + o.votes, 0) || 1;
      return el(
        "div",
        { className: "panel poll", id: `poll-${p.poll}` },
        el("h3", { textContent: `Poll · ${p.state === "open" ? `ends in ${remaining(p.ends_at)}` : "closed"}` }),
        el("div", { textContent: p.question }),
        ...p.options.map((o, i) => {
          const bar = el("div", { className: "bar" }, el("i"));
          bar.firstChild.style.width = `${(100 * o.votes) / total}%`;
          const button = el("button", { textContent: o.text, disabled: p.state !== "open" });
          button.dataset.option = String(i);
          button.addEventListener("click", () => act(`vote`, () => client.vote(room, p.poll, i)));
          return el("div", { className: "option" }, button, bar, el("span", { className: "votes", textContent: String(o.votes) }));
        }),
      );
    }),
  );
}

function renderCoupons() {
  $("coupons").replaceChildren(
    ...[...view.coupons.values()].map((c) => {
      const code = view.claimed.get(c.coupon);
      const button = el("button", {
        textContent: code ? "Claimed" : c.state === "open" ? "Claim" : c.state.replace("_", " "),
        disabled: Boolean(code) || c.state !== "open",
        className: "claim",
      });
      button.addEventListener("click", () =>
        act("claim", async () => {
          const claim = await client.claim(room, c.coupon);
          view.claimed.set(c.coupon, claim.code);
          renderCoupons();
        }),
      );
      return el(
        "div",
        { className: "panel coupon", id: `coupon-${c.coupon}` },
        el("h3", { textContent: `Coupon · ${c.remaining}/${c.stock} left · ${remaining(c.ends_at)}` }),
        el("div", { textContent: c.title }),
        el("div", { className: "option" }, button, code ? el("span", { className: "code", textContent: code }) : ""),
      );
    }),
  );
}

function renderQuizzes() {
  $("quizzes").replaceChildren(
    ...[...view.quizzes.values()].map((q) =>
      el(
        "div",
        { className: "panel quiz", id: `quiz-${q.id}` },
        el("h3", { textContent: `Quiz · ${q.state === "open" ? `${q.answers} answers · ${remaining(q.ends_at)}` : `closed · ${q.correct} right`}` }),
        el("div", { textContent: q.question }),
        ...q.options.map((text, i) => {
          const button = el("button", { textContent: text, disabled: q.state !== "open" });
          if (q.state === "closed" && q.answer === i) button.className = "right";
          button.addEventListener("click", () => act("answer", () => client.answer(room, q.id, i)));
          const count = q.counts ? el("span", { className: "votes", textContent: String(q.counts[i]) }) : "";
          return el("div", { className: "option" }, button, count);
        }),
      ),
    ),
  );
}

/** Lottery id → the outcome of its "verify this draw", once clicked. */
const checks = new Map();

function renderLotteries() {
  $("lotteries").replaceChildren(
    ...[...view.lotteries.values()].map((l) => {
      const entry = typeof l.entry === "string" ? "enter below" : l.entry.comment !== undefined ? `comment “${l.entry.comment}”` : `answer ${l.entry.quiz} right`;
      const body = [el("h3", { textContent: `Lottery · ${l.prize} × ${l.winners}` })];
      if (l.state === "open") {
        body.push(el("div", { className: "meta", textContent: `${l.entrants} entrants · ${entry} · draws in ${remaining(l.ends_at)}` }));
        if (l.entry === "command") {
          const button = el("button", { textContent: "Enter" });
          button.addEventListener("click", () => act("enter", () => client.enter(room, l.id)));
          body.push(button);
        }
        body.push(el("div", { className: "meta", textContent: `commitment ${l.commitment.slice(0, 16)}…` }));
      } else {
        body.push(el("div", { textContent: `winners: ${(l.winner_ids ?? []).join(", ") || "nobody"} (of ${l.entrants})` }));
        const link = el("a", { href: "#", textContent: "verify this draw", className: "verify" });
        // The panels are redrawn every second: the check's outcome lives in `checks`,
        // not in the element it was started from.
        const shown = checks.get(l.id);
        const result = el("span", { className: shown?.className ?? "meta", textContent: shown?.text ?? "" });
        link.addEventListener("click", async (ev) => {
          ev.preventDefault();
          const show = (className, text) => {
            checks.set(l.id, { className, text });
            renderLotteries();
          };
          show("meta", " checking…");
          try {
            const res = await fetch(`/v1/rooms/${encodeURIComponent(room)}/lotteries/${encodeURIComponent(l.id)}/draw`);
            const audit = await res.json();
            if (!res.ok) throw new Error(audit.error?.message ?? res.status);
            const check = verifyLottery(audit);
            show(
              check.ok ? "verified" : "unverified",
              check.ok ? ` ✔ verified: ${check.winners.join(", ") || "nobody"} among ${audit.entrants.length}` : ` ✘ ${check.problems.join("; ")}`,
            );
          } catch (e) {
            show("unverified", ` could not check: ${e.message}`);
          }
        });
        body.push(el("div", {}, link, result));
      }
      if (view.me && (l.winner_ids ?? []).includes(view.me)) body.push(el("div", { className: "right", textContent: "🎉 you won!" }));
      return el("div", { className: "panel lottery", id: `lottery-${l.id}` }, ...body);
    }),
  );
}

function renderCounts() {
  $("likes").textContent = String(view.likes);
  $("online").querySelector("b").textContent = String(view.online);
}

// Countdowns tick once a second.
setInterval(() => {
  if (view.stage?.ends_at) {
    const c = document.getElementById("stage-countdown");
    if (c) c.textContent = `ends in ${remaining(view.stage.ends_at)}`;
  }
  if (view.polls.size + view.coupons.size + view.quizzes.size + view.lotteries.size > 0) renderPanels();
}, 1000);

function renderPanels() {
  renderPolls();
  renderCoupons();
  renderQuizzes();
  renderLotteries();
}

async function act(what, f) {
  try {
    await f();
    notice("");
  } catch (e) {
    notice(`${what}: ${e.code ?? ""}${e.retryAfterMs ? ` (retry in ${e.retryAfterMs} ms)` : ""} — ${e.message}`);
  }
}

// --- the room's messages -------------------------------------------------------------------
const logList = $("log");
function log(e) {
  const data = JSON.stringify(e.data);
  const item = el("li", {}, el("b", { textContent: `#${e.seq} ${e.kind}` }), ` ${data.length > 90 ? `${data.slice(0, 90)}…` : data}`);
  item.dataset.seq = String(e.seq);
  logList.prepend(item);
  while (logList.childElementCount > 200) logList.lastElementChild.remove();
  $("last-seq").textContent = `seq ${e.seq}`;
}

function apply(e, live) {
  if (isKind(e, "comment")) {
    if (live) fly([e.data.text], `${e.priority === "high" ? "high" : ""} ${e.data.user === view.me ? "mine" : ""}`, e.seq);
  } else if (isKind(e, "comment.merged")) {
    if (live) fly([e.data.text, el("b", { textContent: `×${e.data.count}` })], "merged", e.seq);
  } else if (isKind(e, "likes")) {
    view.likes = e.data.total;
    if (live) for (let i = 0; i < Math.min(e.data.delta, 5); i++) burst();
  } else if (isKind(e, "poll")) {
    view.polls.set(e.data.poll, e.data);
  } else if (isKind(e, "coupon")) {
    if (e.data.state === "closed") view.coupons.delete(e.data.coupon);
    else view.coupons.set(e.data.coupon, e.data);
  } else if (isKind(e, "quiz")) {
    view.quizzes.set(e.data.id, e.data);
  } else if (isKind(e, "lottery")) {
    view.lotteries.set(e.data.id, e.data);
  } else if (isKind(e, "lottery.won")) {
    if (live) showToast(`🎉 You won ${e.data.prize}!`);
  } else if (isKind(e, "stage")) {
    view.stage = e.data;
    renderStage();
  } else if (isKind(e, "retract")) {
    for (const node of document.querySelectorAll(`[data-seq="${e.data.seq}"]`)) {
      if (node.classList.contains("dm")) node.remove();
      else node.classList.add("retracted");
    }
  } else if (isKind(e, "entrance")) {
    if (live && e.data.vip.length > 0) showToast(`✨ ${e.data.vip.map((v) => v.name).join(", ")} joined`);
  }
}

function showToast(text) {
  const toast = $("welcome");
  toast.hidden = false;
  toast.textContent = text;
  toast.style.animation = "none";
  void toast.offsetWidth;
  toast.style.animation = "";
}

function fromSnapshot(snapshot) {
  window.demo.snapshots += 1;
  view.likes = snapshot.likes;
  view.online = snapshot.online;
  view.polls = new Map(snapshot.polls.map((p) => [p.poll, p]));
  view.coupons = new Map((snapshot.coupons ?? []).map((c) => [c.coupon, c]));
  view.quizzes = new Map((snapshot.quizzes ?? []).map((q) => [q.id, q]));
  view.lotteries = new Map((snapshot.lotteries ?? []).map((l) => [l.id, l]));
  view.stage = snapshot.stage ?? null;
  logList.replaceChildren();
  for (const item of snapshot.recent) {
    if (item.type === "event") {
      log(item);
      apply(item, false);
    }
  }
  renderStage();
  renderPanels();
  renderCounts();
}

// --- the connection ------------------------------------------------------------------------
const client = new DanmakuClient({ url: wsUrl, token });
window.demo.client = client;
$("room-name").textContent = `· ${room}`;
document.title = `danmaku · ${room}`;
if (!token) $("text").placeholder = "Read-only: add ?token=… to the URL to comment";

client.on("state", (state) => {
  const conn = $("conn");
  conn.className = `conn ${state}`;
  conn.querySelector("span").textContent = state;
  conn.dataset.state = state;
  if (state === "open" && $("notice").textContent.startsWith("reconnecting")) notice("");
});
client.on("hello", (hello) => {
  view.serverOffset = hello.server_time - Date.now();
});
client.on("reconnecting", (r) => notice(`reconnecting in ${r.delayMs} ms (${r.code} ${r.reason})`));
client.on("error", (e) => notice(`${e.code}: ${e.message}`));

// The token's user, to mark the viewer's own lines and wins (the gateway checks the token).
try {
  view.me = token ? JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub : undefined;
} catch {
  view.me = undefined;
}

await client.connect().catch((e) => notice(`cannot connect: ${e.message}`));
try {
  const joined = await client.join(room, {
    onSnapshot: (snapshot) => fromSnapshot(snapshot),
    onJoined: (j) => {
      if (j.welcome) showToast(j.welcome.text);
    },
    onEvent: (e) => {
      window.demo.seqs.push(e.seq);
      log(e);
      apply(e, true);
      renderCounts();
      if (!isKind(e, "comment") && !isKind(e, "comment.merged") && !isKind(e, "likes")) renderPanels();
    },
    onSkipped: (s) => window.demo.skipped.push([s.from, s.to, s.reason]),
    onPresence: (online) => {
      view.online = online;
      renderCounts();
    },
    onKicked: (reason) => notice(`you were removed from the room (${reason})`),
    onError: (e) => notice(`${e.code}: ${e.message}`),
  });
  window.demo.joined = joined.seq;
  document.body.dataset.joined = "true";
} catch (e) {
  notice(`cannot join ${room}: ${e.code ?? ""} ${e.message}`);
}

$("compose").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (text === "") return;
  act("comment", async () => {
    const ack = await client.comment(room, text);
    if (ack.merged) notice("merged into the room's counted line");
    input.value = "";
  });
});
