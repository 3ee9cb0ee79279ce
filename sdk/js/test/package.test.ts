// The package as npm would publish it: the built module, its types, the bundle and the
// README, and nothing else (no sources, tests or configuration).
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";

describe("the npm package", () => {
  it("packs the build, its types and the README alone", () => {
    const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { encoding: "utf8" });
    const [pack] = JSON.parse(out) as { name: string; files: { path: string }[] }[];
    const files = (pack?.files ?? []).map((f) => f.path).sort();
    expect(pack?.name).toBe("@danmaku/client");
    for (const needed of ["README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/danmaku.js"]) {
      expect(files).toContain(needed);
    }
    expect(files.filter((f) => !f.startsWith("dist/") && f !== "README.md" && f !== "package.json")).toEqual([]);
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
  });
});
