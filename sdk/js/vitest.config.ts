import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The integration tests start gateway and Redis processes: one file at a time on 2 cores.
    fileParallelism: false,
  },
});
