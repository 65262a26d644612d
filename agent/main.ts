#!/usr/bin/env node
// The edge agent on its own: what the self-contained bundle (dist/satellite-agent.cjs) runs.
import { agentCli } from './cli/commands.js';

agentCli(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`satellite agent: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(1);
  },
);
