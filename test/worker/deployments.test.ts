import { expect } from 'chai';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { readDeploymentId } from '../../core/deployment.js';
import { Metrics } from '../../core/metrics.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { loadSigningKey } from '../../worker/signer.js';
import { startWorker, type RunningWorker } from '../../worker/state-worker.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image } from '../support/oci.js';
import { until } from '../support/process.js';
import { dropPrefix, REDIS_URL } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, record, useRegistryAndKeys, workerConfig } from '../support/worker.js';

// Issue 18 item 7: two deployments (two databases) pointed at one Redis with the default
// settings (no QUEUE_PREFIX) each build and publish their own groups only, and a worker
// refuses a job that carries another deployment's id.

interface Deployment {
  name: string;
  db: TestDatabase;
  id: string;
  worker: RunningWorker;
  logLines: string[];
}

const GROUPS = 6;

describe('two deployments on one Redis, with the default settings', function () {
  this.timeout(120_000);
  const shared = useRegistryAndKeys();
  const deployments: Deployment[] = [];

  const start = async (name: string): Promise<Deployment> => {
    const db = await createTestDatabase();
    const logLines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write(chunk, _enc, done) { logLines.push(chunk.toString()); done(); } }));
    // No QUEUE_PREFIX: the default is what is tested. Each its own state project, so what
    // each publishes can be told apart in the one registry.
    const config = workerConfig({ DATABASE_URL: db.url, REDIS_URL, STATE_REGISTRY: shared.registry.url, STATE_PROJECT: name, COSIGN_KEY: shared.keys.keyPath, BUILD_DEBOUNCE_MS: '50', BUILD_QUIET_MS: '20' });
    expect(config.queuePrefix).to.equal(undefined);
    const worker = await startWorker({ config, pool: db.pool, log, metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
    const d = { name, db, id: await readDeploymentId(db.pool), worker, logLines };
    deployments.push(d);
    return d;
  };

  after(async () => {
    for (const d of deployments) {
      await d.worker.stop();
      await dropPrefix(`satellite:${d.id}`);
      await d.db.drop();
    }
  });

  it('when both record changes, then each publishes its own groups only, each with its own images', async () => {
    const [a, b] = [await start('deploy-a'), await start('deploy-b')];
    expect(a.id).to.match(/^[0-9a-f]{16}$/).and.not.equal(b.id);
    const images = new Map<string, string>();
    for (let i = 0; i < GROUPS; i++) {
      for (const d of [a, b]) {
        const img = image();
        const group = `edge-${i}`; // the same group names in both: only the queue tells them apart
        await record(d.db.pool, group, 'library/app', img, '1.0');
        images.set(`${d.name}/${group}`, img.manifest.digest);
      }
    }
    const registry = new RegistryClient(shared.registry.url);
    for (const d of [a, b]) {
      for (let i = 0; i < GROUPS; i++) {
        const state = await until(`${d.name}'s state of edge-${i}`, () => readLatestState(registry, `${d.name}/group-state/edge-${i}/state`), 60_000);
        expect(state.artifacts.map((x: { digest: string }) => x.digest), `${d.name}/edge-${i}`).to.deep.equal([images.get(`${d.name}/edge-${i}`)]);
      }
      expect(d.logLines.join(''), `${d.name} refused nothing`).not.to.include('job refused');
    }
  });

  it('when a job with another deployment\'s id reaches a worker, then it is failed at once, not retried, and the log says why', async () => {
    const [a, b] = deployments;
    const job = await a!.worker.queue.add('build', { group: 'edge-0', deployment: b!.id }, { attempts: 5, backoff: { type: 'fixed', delay: 10 } });
    const failed = await until('the foreign job failed', async () => {
      // Read after it failed: the reason is written in the same step as the move to failed.
      const j = (await a!.worker.queue.getJobState(job.id!)) === 'failed' ? await a!.worker.queue.getJob(job.id!) : undefined;
      return j ?? undefined;
    });
    expect(failed.attemptsStarted, 'run once, not retried').to.equal(1);
    expect(failed.failedReason).to.equal(`job of deployment ${b!.id} refused by deployment ${a!.id}: two deployments share this Redis and QUEUE_PREFIX`);
    const line = a!.logLines.map((l) => JSON.parse(l) as { msg: string; jobDeployment?: string; deployment?: string }).find((l) => l.msg.startsWith('job refused'));
    expect(line, 'a log line').to.include({ jobDeployment: b!.id, deployment: a!.id });
    expect(line!.msg).to.include('two deployments share this Redis and QUEUE_PREFIX');
  });
});
