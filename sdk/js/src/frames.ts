import type { ServerMessage } from "./types.js";

/**
 * The messages of one text frame: the server batches several, one JSON object per
 * line. A line that is not a JSON object is reported, not thrown.
 */
export function parseFrame(text: string, onBadLine: (line: string) => void): ServerMessage[] {
  const out: ServerMessage[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      onBadLine(line);
      continue;
    }
    if (typeof value === "object" && value !== null && typeof (value as { type?: unknown }).type === "string") {
      out.push(value as ServerMessage);
    } else {
      onBadLine(line);
    }
  }
  return out;
}
