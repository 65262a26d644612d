import { expect } from 'chai';
import { createHarborClient, HarborSetup } from '@harbor-api/client';
import { image } from '../support/oci.js';
import { record, useTestKeys } from '../support/worker.js';
import { HARBOR_ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { satellite } from '../support/run.js';

// Every `satellite groups …` and `satellite satellites …` command, as an administrator types
// it, once for people (the table or sentence) and once with --json, against the Harbor double.

describe('satellite groups … / satellite satellites … on the command line', function () {
  this.timeout(120_000);
  let h: AdminHarness;
  const keys = useTestKeys();
  let env: Record<string, string>;
  beforeEach(async () => {
    h = await startAdminHarness({ COSIGN_PUBLIC_KEY: keys.pubPath });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: `sha256:${'1'.repeat(64)}`, tags: ['1.27'] });
    h.harbor.addArtifact({ repository: 'tools/curl', digest: `sha256:${'2'.repeat(64)}`, tags: ['8'] });
    env = {
      DATABASE_URL: h.db.url, HARBOR_URL: h.harbor.url, HARBOR_USERNAME: HARBOR_ADMIN.username, HARBOR_PASSWORD: HARBOR_ADMIN.password,
      ENDPOINT_URL: h.url, ENDPOINT_PASSWORD: h.config.endpointPassword!, COSIGN_PUBLIC_KEY: keys.pubPath, IMAGE_REGISTRY: h.config.imageRegistry,
    };
  });
  afterEach(async () => {
    expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h.close();
  });

  const run = (...args: string[]) => satellite(args, env).then((r) => r.stdout);
  const json = async (...args: string[]) => JSON.parse(await run(...args, '--json'));
  const refused = (...args: string[]) => satellite(args, env).then(
    () => expect.fail(`${args.join(' ')} should fail`),
    (e: { code: number; stderr: string }) => e,
  );
  const lines = (s: string) => s.trimEnd().split('\n');

  it('when an administrator runs each groups command, then Harbor follows and each prints a table or sentence, or the API\'s JSON', async () => {
    // create
    const created = await run('groups', 'create', 'edge-eu', '--filter', 'library/**', '--replicate');
    const policy = h.harbor.policies[0]!;
    expect(created).to.include(`group edge-eu created in Harbor: rule ${policy.id} (destination namespace edge-eu, No Flattening, deletions replicated)`)
      .and.include('webhooks on: library').and.include(`replication started (execution ${h.harbor.executions[0]!.id})`);
    const us = await json('groups', 'create', 'edge-us', '--filter', 'tools/**');
    expect(us).to.deep.include({ created: true });
    expect(us.group).to.deep.include({ name: 'edge-us', projects: ['tools'], trigger: { type: 'event_based' } });
    expect(h.harbor.policies).to.have.length(2);

    // show
    const shown = lines(await run('groups', 'show', 'edge-eu'));
    expect(shown[0]).to.match(/^GROUP\s+RULE\s+FILTERS\s+TRIGGER\s+LAST EXECUTION\s+STATE\s+SATELLITES$/);
    expect(shown[1]).to.match(new RegExp(`^edge-eu\\s+${policy.id}\\s+name=library/\\*\\*\\s+event_based\\s+InProgress #${h.harbor.executions[0]!.id} \\(0/0\\)\\s+not published\\s+0$`));
    expect(await json('groups', 'show', 'edge-eu')).to.deep.include({ name: 'edge-eu', policyId: policy.id, adopted: false, satellites: 0, state: null });

    // update
    const updated = lines(await run('groups', 'update', 'edge-eu', '--filter', 'library/**', '--tag', '1.*', '--trigger', 'manual'));
    expect(updated[1]).to.match(/^edge-eu\s+\d+\s+name=library\/\*\* tag=1\.\*\s+manual\s/);
    expect(h.harbor.policies[0]).to.deep.include({ filters: [{ type: 'name', value: 'library/**' }, { type: 'tag', value: '1.*' }], trigger: { type: 'manual' } });
    const scheduled = await json('groups', 'update', 'edge-us', '--trigger', 'scheduled', '--cron', '0 0 * * * *');
    expect(scheduled).to.deep.include({ trigger: { type: 'scheduled', trigger_settings: { cron: '0 0 * * * *' } }, filters: [{ type: 'name', value: 'tools/**' }] });

    // replicate
    expect(await run('groups', 'replicate', 'edge-us')).to.equal(`replication of edge-us started (execution ${h.harbor.executions.at(-1)!.id})\n`);
    expect(await json('groups', 'replicate', 'edge-us')).to.deep.equal({ executionId: h.harbor.executions.at(-1)!.id });

    // reconcile
    await record(h.db.pool, 'edge-us', 'tools/gone', image(), '1'); // not in Harbor
    const reconciled = await json('groups', 'reconcile', 'edge-us');
    expect(reconciled).to.deep.include({ group: 'edge-us', checked: 1, updated: 0 });
    expect(reconciled.tombstoned).to.have.length(1).and.satisfy((t: string[]) => t[0]!.startsWith('tools/gone@sha256:'));
    expect(await run('groups', 'reconcile', 'edge-us')).to.equal('group edge-us: 0 entries checked against Harbor, 0 tombstoned, 0 labels/platforms updated\n');

    // adopt (a rule made elsewhere, keeping the path)
    const harbor = new HarborSetup(createHarborClient({ url: h.harbor.url, ...HARBOR_ADMIN }));
    const made = await harbor.ensureGroupPolicy({ group: 'edge-as', registryId: policy.dest_registry ? (policy.dest_registry as { id: number }).id : 0, filters: [{ type: 'name', value: 'tools/**' }] });
    const adopted = await json('groups', 'adopt', String(made));
    expect(adopted).to.deep.include({ fixed: false, warnings: [] });
    expect(adopted.group).to.deep.include({ name: 'edge-as', adopted: true, policyId: made });

    // list
    expect(lines(await run('groups', 'list')).slice(1).map((l) => l.split(/\s+/)[0])).to.deep.equal(['edge-as', 'edge-eu', 'edge-us']);
    expect((await json('groups', 'list')).map((g: { name: string }) => g.name)).to.deep.equal(['edge-as', 'edge-eu', 'edge-us']);

    // delete: refused while a replication runs, then done
    const busy = await refused('groups', 'delete', 'edge-us');
    expect(busy.code).to.equal(1);
    expect(busy.stderr).to.include('edge-us is replicating now').and.include('Wait for it to finish');
    for (const e of h.harbor.executions) e.status = 'Succeed';
    expect(await run('groups', 'delete', 'edge-us')).to.equal('group edge-us deleted: rule removed from Harbor, 0 artifacts tombstoned (satellites remove them with the next state)\n');
    expect(await json('groups', 'delete', 'edge-as')).to.deep.equal({ tombstoned: 0 });
    expect(h.harbor.policies.map((p) => p.name)).to.deep.equal(['satellite-edge-eu']);

    // bad input: exit 2, nothing in Harbor
    const calls = h.harbor.calls.length;
    const bad = await refused('groups', 'create', 'Edge EU', '--filter', 'library/**');
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include('name: a group name is one lower-case path component');
    expect(h.harbor.calls.length).to.equal(calls);
    const unknown = await refused('groups', 'show', 'edge-xx');
    expect([unknown.code, unknown.stderr]).to.deep.equal([1, 'satellite: group edge-xx does not exist\n']);
  });

  it('when an administrator runs each satellites command, then the robot in Harbor follows and each prints a table or sentence, or the API\'s JSON', async () => {
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-us', filters: [{ type: 'name', value: 'tools/**' }] } })).status).to.equal(201);
    await record(h.db.pool, 'edge-eu', 'library/nginx', image(), '1.27');
    await record(h.db.pool, 'edge-us', 'tools/curl', image(), '8');
    const register = async (token: string) => {
      const res = await h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token } });
      expect(res.status).to.equal(200);
      return res.body as { username: string; password: string };
    };

    // create
    const issued = await json('satellites', 'create', 'store-1', '--group', 'edge-eu');
    expect(Object.keys(issued).sort()).to.deep.equal(['expiresAt', 'name', 'token']);
    expect(issued.token).to.match(/^sat_/);
    const human = await run('satellites', 'create', 'store-2', '--group', 'edge-us', '--expires-in-hours', '1');
    expect(human).to.match(/^registration token for satellite store-2 \(valid once, until \S+; not shown again\):\n {2}sat_\S+\non the device: satellite agent register --url \S+ --token <token>\n$/);
    const reg = await register(issued.token);

    // token
    const again = await json('satellites', 'token', 'store-2');
    expect(again).to.deep.include({ name: 'store-2' });
    expect(await run('satellites', 'token', 'store-2')).to.include('registration token for satellite store-2');
    expect((await h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token: again.token } })).status, 'a newer token replaced it').to.equal(401);

    // list and show
    const list = lines(await run('satellites', 'list'));
    expect(list[0]).to.match(/^SATELLITE\s+STATUS\s+GROUPS\s+DRIFT\s+LAST SEEN$/);
    expect(list.slice(1)).to.satisfy((rows: string[]) => /^store-1\s+never reported\s+edge-eu\s+-\s+never$/.test(rows[0]!) && /^store-2\s+not registered\s+edge-us\s+-\s+never$/.test(rows[1]!));
    expect((await json('satellites', 'list')).map((s: { name: string; status: string }) => [s.name, s.status])).to.deep.equal([['store-1', 'never reported'], ['store-2', 'not registered']]);
    expect(await run('satellites', 'show', 'store-1')).to.include('robot robot$satellite-store-1 may pull from: library, satellite');
    expect((await json('satellites', 'show', 'store-1')).robot).to.deep.equal({ name: 'robot$satellite-store-1', projects: ['library', 'satellite'] });

    // set-groups
    const moved = lines(await run('satellites', 'set-groups', 'store-1', '--group', 'edge-us', '--group', 'edge-eu'));
    expect(moved[1]).to.match(/^store-1\s+never reported\s+edge-eu,edge-us\s/);
    expect(h.harbor.mayPull(reg.username, 'tools')).to.equal(true);
    expect((await json('satellites', 'set-groups', 'store-1', '--group', 'edge-us')).robot.projects).to.deep.equal(['satellite', 'tools']);
    expect(h.harbor.mayPull(reg.username, 'library')).to.equal(false);

    // rotate
    const rotatedText = await run('satellites', 'rotate', 'store-1');
    const secret = /password: (\S+)/.exec(rotatedText)?.[1];
    expect(rotatedText).to.include('new robot secret for store-1 (the old one no longer works; not shown again):').and.include('username: robot$satellite-store-1');
    expect(h.harbor.robots.find((r) => r.name === 'satellite-store-1')!.secret).to.equal(secret);
    const rotated = await json('satellites', 'rotate', 'store-1');
    expect(rotated).to.deep.include({ name: 'store-1', username: 'robot$satellite-store-1' });
    expect(h.harbor.robots.find((r) => r.name === 'satellite-store-1')!.secret).to.equal(rotated.password);

    // revoke
    expect(await run('satellites', 'revoke', 'store-1')).to.equal('satellite store-1 revoked: its robot is deleted in Harbor and its tokens refused\n');
    expect(h.harbor.robots.map((r) => r.name)).to.not.include('satellite-store-1');
    expect(await json('satellites', 'revoke', 'store-2')).to.deep.equal({ revoked: 'store-2' });
    expect((await json('satellites', 'list')).map((s: { status: string }) => s.status)).to.deep.equal(['revoked', 'revoked']);

    // bad input and unknown names
    const bad = await refused('satellites', 'create', 'store-3', '--group', 'no-such-group');
    expect([bad.code, bad.stderr]).to.deep.equal([2, 'satellite: groups[0]: no group no-such-group: create it first (POST /api/v1/groups)\n']);
    const hours = await refused('satellites', 'create', 'store-3', '--group', 'edge-eu', '--expires-in-hours', 'soon');
    expect(hours.code).to.equal(2);
    const unknown = await refused('satellites', 'rotate', 'store-9');
    expect([unknown.code, unknown.stderr]).to.deep.equal([1, 'satellite: satellite store-9 does not exist\n']);
  });

  it('when ENDPOINT_PASSWORD is not set, then every command that talks to Harbor works, but those that register the endpoint in Harbor (groups create and update, harbor setup), which refuse naming it and change nothing', async () => {
    // Made with the secret (create registers the endpoint); edge-old is deleted without it below.
    await run('groups', 'create', 'edge-eu', '--filter', 'library/**');
    await run('groups', 'create', 'edge-old', '--filter', 'tools/**');
    await record(h.db.pool, 'edge-eu', 'library/nginx', image(), '1.27');
    const bare = { ...env, ENDPOINT_PASSWORD: '' };
    const ok = async (...args: string[]) => {
      const r = await satellite(args, bare).catch((e: { code: number; stderr: string }) => expect.fail(`${args.join(' ')} exited ${e.code}: ${e.stderr}`));
      return r.stdout;
    };
    const needs = async (...args: string[]) => {
      const e = await satellite(args, bare).then(() => expect.fail(`${args.join(' ')} should need ENDPOINT_PASSWORD`), (x: { code: number; stderr: string }) => x);
      expect(e.stderr, args.join(' ')).to.include('ENDPOINT_PASSWORD');
    };
    const calls = h.harbor.calls.length;
    for (const args of [['groups', 'list'], ['groups', 'show', 'edge-eu'], ['groups', 'replicate', 'edge-eu'], ['groups', 'reconcile', 'edge-eu']]) await ok(...args);
    const token = JSON.parse(await ok('satellites', 'create', 'store-1', '--group', 'edge-eu', '--json')).token;
    expect((await h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token } })).status).to.equal(200);
    for (const args of [['satellites', 'list'], ['satellites', 'show', 'store-1'], ['satellites', 'token', 'store-1'], ['satellites', 'set-groups', 'store-1', '--group', 'edge-eu'],
      ['satellites', 'rotate', 'store-1'], ['harbor', 'robot', 'pull-edge', '--group', 'edge-eu'], ['satellites', 'revoke', 'store-1']]) await ok(...args);
    expect(h.harbor.calls.slice(calls), 'they did reach Harbor').to.include.members(['startReplication', 'CreateRobot', 'RefreshSec', 'DeleteRobot']);

    const before = h.harbor.calls.length;
    const policies = JSON.stringify(h.harbor.policies);
    await needs('groups', 'create', 'edge-us', '--filter', 'tools/**');
    await needs('groups', 'update', 'edge-eu', '--filter', 'library/nginx');
    await needs('harbor', 'setup', 'edge-as');
    await needs('harbor', 'setup', 'edge-old');
    expect(h.harbor.calls.slice(before).filter((c) => !/^(list|get|head)/i.test(c)), 'nothing changed in Harbor').to.deep.equal([]);
    expect(JSON.stringify(h.harbor.policies), 'no rule made or changed').to.equal(policies);
    await ok('groups', 'delete', 'edge-old');
  });
});
