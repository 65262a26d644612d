import type { Logger } from 'pino';
import type { Agent } from './agent.js';
import type { AgentConfig } from '../config/config.js';
import type { AgentStateDoc } from '../store/state-files.js';
import type { StatusReport } from '../../core/satellite-protocol.js';
import { fetchTrusting } from '../../core/http/trust.js';

// The fleet view's input: after each sync the agent tells the Satellite service what it runs,
// with its own (robot) credential. Best effort: a report that fails is logged and retried
// with the next sync; it never holds a sync back.

export function statusReport(doc: AgentStateDoc, groups: readonly string[]): StatusReport {
  return {
    agentVersion: doc.agentVersion,
    syncedAt: new Date().toISOString(),
    groups: groups.map((name) => {
      const rec = doc.groups[name];
      const images = Object.values(rec?.images ?? {});
      const count = (s: string) => images.filter((i) => i.status === s).length;
      return {
        name,
        version: rec?.applied?.version ?? null,
        digest: rec?.applied?.digest ?? null,
        appliedAt: rec?.applied?.appliedAt ?? null,
        checkedAt: rec?.checkedAt ?? null,
        images: { present: count('present'), pending: count('pending'), failed: count('failed') },
        failures: images.filter((i) => i.status === 'failed').slice(0, 50).map((i) => ({ repository: i.repository, digest: i.digest, reason: i.reason ?? '' })),
      };
    }),
  };
}

export async function sendReport(agent: Agent, config: AgentConfig, log: Logger): Promise<boolean> {
  if (!config.report) return false;
  const body = JSON.stringify(statusReport(agent.doc, config.groups.map((g) => g.name)));
  const headers: Record<string, string> = { 'Content-Type': 'application/json' };
  if (config.credentials) headers.Authorization = `Basic ${Buffer.from(`${config.credentials.username}:${config.credentials.password}`).toString('base64')}`;
  try {
    const res = await fetch(config.report.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(config.timeoutMs), ...(await fetchTrusting(config.ca)) });
    await res.body?.cancel();
    if (res.ok) return true;
    log.warn({ status: res.status, url: config.report.url }, 'the status report was refused');
  } catch (err) {
    log.warn({ err: (err as Error).message, url: config.report.url }, 'cannot send the status report');
  }
  agent.metrics.failures.inc({ where: 'report' });
  return false;
}
