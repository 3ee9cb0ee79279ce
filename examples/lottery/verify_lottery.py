#!/usr/bin/env python3
"""Recomputes a danmaku lottery's draw from its audit record, with nothing but the
standard library, so anyone can check that the published winners are the ones the seed
and the entrants give.

    python3 examples/lottery/verify_lottery.py --url http://127.0.0.1:8080 \
        --room shop-42 --lottery l-1 --api-key "$DANMAKU_API_KEY"

It reads ``GET /v1/rooms/{room}/lotteries/{id}`` and checks, as the protocol defines:

* the commitment published at the open is the SHA-256 of the seed's 32 bytes;
* ``entrants_digest`` is the SHA-256 of the entrant ids sorted (by their UTF-8 bytes)
  and joined by newlines, and ``entrants`` is their number;
* the winners are the ``winners`` entrants with the smallest hex SHA-256 of
  ``seed_hex + ":" + user_id``, in that order.

``--record FILE`` checks a record saved earlier instead of asking a gateway. Exits 0
and prints ``verified`` when every check holds, 1 otherwise (saying which failed).
"""

import argparse
import hashlib
import json
import sys
import urllib.request


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify(record: dict) -> list:
    """The failed checks of a lottery's record (empty when the draw is right)."""
    lottery = record["lottery"]
    if lottery.get("state") != "drawn":
        return [f"the lottery is not drawn yet (state {lottery.get('state')!r})"]
    failures = []
    seed_hex = lottery["seed"]
    if sha256_hex(bytes.fromhex(seed_hex)) != lottery["commitment"]:
        failures.append("the seed does not hash to the commitment published at the open")
    entrants = sorted(record["entrants"], key=lambda u: u.encode("utf-8"))
    if len(entrants) != lottery["entrants"]:
        failures.append(f"{len(entrants)} entrants listed, {lottery['entrants']} published")
    digest = sha256_hex("\n".join(entrants).encode("utf-8"))
    if digest != lottery["entrants_digest"]:
        failures.append("the entrants do not hash to the published entrants_digest")
    ranked = sorted(
        (sha256_hex(f"{seed_hex}:{u}".encode("utf-8")), u.encode("utf-8"), u) for u in entrants
    )
    want = [u for _, _, u in ranked[: lottery["winners"]]]
    if want != lottery["winner_ids"]:
        failures.append(f"the winners should be {want}, published {lottery['winner_ids']}")
    return failures


def fetch(url: str, room: str, lottery: str, api_key: str) -> dict:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/rooms/{room}/lotteries/{lottery}",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="the gateway's HTTP base URL")
    p.add_argument("--room")
    p.add_argument("--lottery", help="the lottery id, l-…")
    p.add_argument("--api-key", help="a backend API key")
    p.add_argument("--record", help="a saved record (JSON) to check instead")
    args = p.parse_args()
    if args.record:
        with open(args.record, encoding="utf-8") as f:
            record = json.load(f)
    elif args.url and args.room and args.lottery and args.api_key:
        record = fetch(args.url, args.room, args.lottery, args.api_key)
    else:
        p.error("give --record, or --url, --room, --lottery and --api-key")
    failures = verify(record)
    for f in failures:
        print(f"FAILED: {f}")
    if failures:
        return 1
    lottery = record["lottery"]
    print(f"verified: {lottery['id']} drew {lottery['winner_ids']} among {lottery['entrants']} entrants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
