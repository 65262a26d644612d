// Bundles the edge agent (agent/main.ts and everything it imports) into one file,
// dist/satellite-agent.cjs (`npm run build:agent`), with esbuild.
//
// esbuild escapes what is not ASCII in code, but writes comments as they are. One character
// beyond Latin-1 anywhere in the file (a ’ in undici's comments) makes V8 hold the whole
// ~3 MB source as a two-byte string, for the life of the process (lazy compilation reads it):
// 3 MiB more of every agent's heap, measured with --heap-prof. Such characters are written as
// \u escapes instead; in a comment that is only text, and code has none left by esbuild.
// Not minified: the mutation check (test/mutation) edits the bundle's code as printed, and a
// stack trace from a device stays readable.
import { build } from 'esbuild';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

const outfile = process.argv[2] ?? 'dist/satellite-agent.cjs';
const result = await build({
  entryPoints: ['agent/main.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  outfile,
  write: false,
  logLevel: 'warning',
});
for (const file of result.outputFiles) {
  const text = file.text.replace(/[^\u0000-\u00ff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  await mkdir(dirname(file.path), { recursive: true }); // a fresh tree (the image's build stage) has no dist/
  await writeFile(file.path, text, { mode: 0o755 });
}
