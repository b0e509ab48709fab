// The console's front end: built into ../dist, which the Go binary embeds
// (go:embed), so `go build` needs no node. Rebuild with `make console-assets`.
import { defineConfig } from 'vite'

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: '../dist',
    emptyOutDir: true,
    target: 'es2022',
    // One script and one stylesheet: no runtime chunk loading, nothing
    // fetched from anywhere but the console itself.
    cssCodeSplit: false,
    modulePreload: false,
    chunkSizeWarningLimit: 400,
  },
  server: { proxy: { '/api': process.env.DROVER_CONSOLE_URL ?? 'http://127.0.0.1:9480' } },
})
