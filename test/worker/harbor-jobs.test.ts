import { expect } from 'chai';
import { createLogger } from '../../core/logger.js';
import { startHarborWorker, type RunningHarborWorker } from '../../worker/harbor-jobs.js';
import { image } from '../support/oci.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { until } from '../support/process.js';
import { Redis } from 'ioredis';
import { dropPrefix, ownRedis, REDIS_URL, testPrefix } from '../support/redis.js';
import { record, useTestKeys } from '../support/worker.js';
import { startAdminHarness, type AdminHarness } from '../support/admin.js';

// The Harbor queue as it runs in `satellite worker`: jobs relayed from the harbor_outbox
// table into BullMQ (real Redis), the repeatable reconcile registered with BullMQ, the
// Harbor API played by the double.

describe('the Harbor jobs of the worker', function () {
  this.timeout(60_000);
  let h: AdminHarness;
  const keys = useTestKeys();
  let prefix: string;
  let worker: RunningHarborWorker | undefined;
  const nginx = image();
  const nginx2 = image();
  const app = image();

  beforeEach(async () => {
    h = await startAdminHarness({ COSIGN_PUBLIC_KEY: keys.pubPath });
    prefix = testPrefix();
    h.harbor.addArtifact({ repository: 'library/nginx', digest: nginx.manifest.digest, tags: ['1.27'] });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: nginx2.manifest.digest, tags: ['2.0'] });
    h.harbor.addArtifact({ repository: 'team-a/app', digest: app.manifest.digest, tags: ['1'] });
  });
  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
    expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h.close();
    await dropPrefix(prefix);
  });

  const start = async (intervalSeconds = 3600, redisUrl = REDIS_URL, scheduleCheckSeconds = 60) => {
    worker = await startHarborWorker({
      config: { ...h.config, redisUrl, queuePrefix: prefix, harborReconcileIntervalSeconds: intervalSeconds, scheduleCheckSeconds },
      pool: h.db.pool, log: createLogger((process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent'),
    });
    expect(worker, 'Harbor is configured').to.not.equal(undefined);
    return worker!;
  };
  /** Waits for the reconcile the schedule runs at start (and the per-group ones it queues) to be done. */
  const firstReconcileDone = async (w: RunningHarborWorker, groups: number) => {
    await until('the first scheduled reconcile to finish', async () => {
      const done = (await w.queue.getCompleted()).map((j) => j.name);
      return done.includes('reconcile-all') && done.filter((n) => n === 'reconcile').length === groups ? true : undefined;
    }, 20_000);
  };
  const create = async (body: unknown) => {
    const res = await h.api('/api/v1/groups', { method: 'POST', body });
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    return res.body;
  };
  const deleted = async (group: string, digest: string) =>
    (await h.db.pool.query('SELECT deleted FROM artifacts WHERE group_name = $1 AND digest = $2', [group, digest])).rows[0]?.deleted as boolean | undefined;

  it('when the worker starts, then the reconcile of every group is a repeatable job in BullMQ, and its run tombstones what left a group\'s filter', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }, { type: 'tag', value: '1.*' }] });
    await record(h.db.pool, 'edge-eu', 'library/nginx', nginx, '1.27');
    await record(h.db.pool, 'edge-eu', 'library/nginx', nginx2, '2.0'); // replicated before the tag filter was narrowed
    const w = await start(3600);
    const scheduler = await until('the reconcile to be scheduled', async () => (await w.queue.getJobScheduler('reconcile-all')) ?? undefined);
    expect(scheduler).to.deep.include({ key: 'reconcile-all', name: 'reconcile-all', every: 3_600_000 });
    await until('the scheduled reconcile to tombstone 2.0', async () => ((await deleted('edge-eu', nginx2.manifest.digest)) ? true : undefined), 20_000);
    expect(await deleted('edge-eu', nginx.manifest.digest), 'what the filter still selects stays').to.equal(false);
  });

  it('when Harbor reports an artifact deleted, then the reconcile-deleted job relayed to the worker tombstones it, once Harbor confirms', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
    await record(h.db.pool, 'edge-eu', 'library/nginx', nginx, '1.27');
    await record(h.db.pool, 'edge-eu', 'library/nginx', nginx2, '2.0');
    await firstReconcileDone(await start(), 1); // so that only the event's job can tombstone it
    await h.harbor.removeArtifact('library/nginx', nginx.manifest.digest);
    expect(h.harbor.deliveries.at(-1)).to.deep.include({ event: 'DELETE_ARTIFACT', status: 200 });
    await until('the deleted artifact to be tombstoned', async () => ((await deleted('edge-eu', nginx.manifest.digest)) ? true : undefined), 20_000);
    expect(await deleted('edge-eu', nginx2.manifest.digest), 'an event tombstones only what it names').to.equal(false);
  });

  it('when a group is deleted, then the robots of its satellites lose the pull rights only that group gave them', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
    await create({ name: 'edge-us', filters: [{ type: 'name', value: 'team-a/**' }] });
    await record(h.db.pool, 'edge-eu', 'library/nginx', nginx, '1.27');
    await record(h.db.pool, 'edge-us', 'team-a/app', app, '1');
    const { token } = (await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-1', groups: ['edge-eu', 'edge-us'] } })).body;
    const reg = (await h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token } })).body;
    expect(h.harbor.mayPull(reg.username, 'library')).to.equal(true);
    expect(h.harbor.mayPull(reg.username, 'team-a')).to.equal(true);
    await firstReconcileDone(await start(), 2); // so that only the deletion's job can change the robot
    expect((await h.api('/api/v1/groups/edge-eu', { method: 'DELETE' })).status).to.equal(200);
    await until('the robot to lose library', async () => (h.harbor.mayPull(reg.username, 'library') ? undefined : true), 20_000);
    expect(h.harbor.mayPull(reg.username, 'team-a'), 'edge-us still needs it').to.equal(true);
    expect(h.harbor.mayPull(reg.username, 'satellite'), 'it still reads the states, tombstones included').to.equal(true);
    expect((await h.api('/api/v1/satellites/store-1')).body.robot.projects).to.deep.equal(['satellite', 'team-a']);
  });

  it('when Harbor answers an API call with an endless body, then the worker drops it at the cap and fails the job at once, naming the URL and the cap', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
    const proxy = await startFaultProxy(h.harbor.url);
    try {
      proxy.rules.push({ method: 'GET', path: /^\/api\/v2\.0\//, fault: 'endless', prefix: '[{"name":"', times: 1_000 });
      worker = await startHarborWorker({
        config: { ...h.config, harborUrl: proxy.url, redisUrl: REDIS_URL, queuePrefix: prefix, harborReconcileIntervalSeconds: 3600 },
        pool: h.db.pool, log: createLogger((process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent'),
      });
      const failed = await until('the reconcile to fail', async () => (await worker!.queue.getFailed()).find((j) => j.name === 'reconcile-all'), 30_000);
      expect(failed.attemptsMade, 'not retried: the same call gets the same answer').to.equal(1);
      expect(failed.failedReason).to.include(`${proxy.url}/api/v2.0/`).and.include('more than 16 MiB, the cap for a Harbor API answer');
      const endless = proxy.answers.filter((a) => a.request.startsWith('GET /api/v2.0/'));
      expect(endless.length).to.be.above(0);
      for (const a of endless) expect(a.bytes, `${a.request}: dropped long before the proxy's safety stop`).to.be.below(48 * 1024 * 1024);
    } finally {
      await worker?.stop();
      worker = undefined;
      await proxy.close();
    }
  });

  it('when a new project in Harbor matches a group\'s filter glob, then the scheduled reconcile gives it the webhook policy', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'team-*/**' }] });
    const projectId = (name: string) => h.harbor.projects.find((p) => p.name === name)!.project_id;
    expect(h.harbor.webhooks.map((w) => w.project_id)).to.deep.equal([projectId('team-a')]);
    h.harbor.addArtifact({ repository: 'team-b/api', digest: `sha256:${'b'.repeat(64)}`, tags: ['1'] }); // a project made since
    await start();
    await until('team-b to get the webhook', async () => (h.harbor.webhooks.some((w) => w.project_id === projectId('team-b')) ? true : undefined), 20_000);
    expect(h.harbor.webhooks).to.have.length(2);
    expect((await h.api('/api/v1/groups/edge-eu')).body.projects).to.deep.equal(['team-a', 'team-b']);
    // And the new project's notifications are accepted as the group's.
    const secret = ((h.harbor.webhooks.find((w) => w.project_id === projectId('team-b'))!.targets as { auth_header: string }[])[0]!).auth_header;
    const res = await h.api('/api/v1/webhooks/harbor', { method: 'POST', auth: secret, body: { type: 'REPLICATION', event_data: { replication: {} } } });
    expect(res.body).to.deep.equal({ event: 'REPLICATION', groups: ['edge-eu'] });
  });

  it('when the worker restarts with another reconcile interval, then the repeatable job follows it', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
    let w = await start(3600);
    await until('the reconcile to be scheduled', async () => (await w.queue.getJobScheduler('reconcile-all')) ?? undefined);
    await w.stop();
    w = await start(7200);
    await until('the new interval', async () => ((await w.queue.getJobScheduler('reconcile-all'))?.every === 7_200_000 ? true : undefined), 20_000);
  });

  for (const [how, checkSeconds] of [['is flushed', 1], ['restarts empty', 3600]] as const) {
    it(`when Redis ${how} under a running worker, then the Harbor reconcile is registered again and runs`, async () => {
      await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
      const redis = await ownRedis();
      try {
        // A flush leaves the connection up: only the periodic check (every second) sees it.
        // A restart is seen on reconnecting (the periodic check is an hour away).
        const w = await start(3600, redis.url, checkSeconds);
        await firstReconcileDone(w, 1);
        if (how === 'is flushed') {
          const conn = new Redis(redis.url);
          await conn.flushall().finally(() => conn.disconnect());
        } else {
          await redis.stop();
          await redis.start();
        }
        const scheduler = await until('the reconcile to be scheduled again', async () => (await w.queue.getJobScheduler('reconcile-all')) ?? undefined, 20_000);
        expect(scheduler).to.deep.include({ key: 'reconcile-all', every: 3_600_000 });
        await firstReconcileDone(w, 1); // Redis forgot the first one: this is a run after it came back
      } finally {
        await redis.start().catch(() => undefined);
        await worker?.stop();
        worker = undefined;
        await redis.stop();
      }
    });
  }
});
