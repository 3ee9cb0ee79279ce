// Bundles the SDK into one ES module, dist/danmaku.js, for pages that load it with
// <script type="module"> and no build step (the gateway's /demo serves this file).
import { build } from "esbuild";

await build({
  entryPoints: ["src/index.ts"],
  bundle: true,
  format: "esm",
  target: "es2020",
  outfile: "dist/danmaku.js",
  minify: true,
  legalComments: "none",
  banner: { js: "// @danmaku/client, bundled from sdk/js/src by `npm run build`: do not edit." },
  logLevel: "warning",
});
