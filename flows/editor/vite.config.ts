/// <reference types="vitest/config" />
// Builds the flow editor into static/editor/ with a manifest the Django page
// reads (flows/vite.py). No inline scripts or injected styles: the CSS is
// extracted to a file, so a strict Content-Security-Policy holds.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  base: "/static/editor/",
  build: {
    outDir: "../../static/editor",
    emptyOutDir: true,
    manifest: true,
    modulePreload: { polyfill: false },
    rollupOptions: { input: "src/main.tsx" },
  },
  test: {
    include: ["src/**/*.test.ts"],
    // The tested modules are pure: one worker for all files is enough.
    isolate: false,
  },
});
