/// <reference types="vitest/config" />
// Builds the flow editor, the read-only diagrams (flow and run pages) and the
// dashboard's chart into
// static/editor/ with a manifest the Django pages read (flows/vite.py); what
// both entries share (React, React Flow, their styles) is one chunk. No inline scripts or injected styles: the CSS is
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
    rollupOptions: { input: ["src/main.tsx", "src/diagram.tsx", "src/chart.ts"] },
  },
  test: {
    include: ["src/**/*.test.ts"],
    // The tested modules are pure: one worker for all files is enough.
    isolate: false,
  },
});
