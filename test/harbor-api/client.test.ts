import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { createHarborClient, HarborApiError, HarborSetup } from '@harbor-api/client';
import { deriveSpec, HARBOR_OPERATIONS, loadUpstream } from '../../harbor-api/tools/harbor-spec.js';
import { SPEC_FILE, specText, TYPES_FILE, typesText, UPSTREAM } from '../../harbor-api/tools/generate.js';
import { startHarborDouble, type HarborDouble } from '../../harbor-dev/harbor-double.js';

const ADMIN = { username: 'admin', password: 'Harbor12345' };

describe("the Harbor API client (@harbor-api/client) and Harbor's published spec", function () {
  this.timeout(30_000);

  it('when the spec is derived again from Harbor\'s swagger.yaml, then it equals the committed harbor-api/harbor-api.json', () => {
    expect(specText()).to.equal(readFileSync(SPEC_FILE, 'utf8'));
  });

  it('when the types are generated again with openapi-typescript, then they equal the committed ones', async () => {
    expect(await typesText(readFileSync(SPEC_FILE, 'utf8'))).to.equal(readFileSync(TYPES_FILE, 'utf8'));
  });

  it('when each operation of our spec is looked up upstream, then its method, path, parameters and body fields are Harbor\'s', () => {
    const upstream = loadUpstream(UPSTREAM);
    const ours = JSON.parse(readFileSync(SPEC_FILE, 'utf8')) as { paths: Record<string, Record<string, { operationId: string; parameters: { name: string; in: string }[] }>>; components: { schemas: Record<string, { properties?: Record<string, unknown> }> } };
    const seen: string[] = [];
    for (const [path, item] of Object.entries(ours.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const up = upstream.paths[path]?.[method] as { operationId: string; parameters?: { $ref?: string; name?: string; in?: string }[] } | undefined;
        expect(up, `${method} ${path}`).to.not.equal(undefined);
        expect(up!.operationId).to.equal(op.operationId);
        const upParams = (up!.parameters ?? []).map((p) => (p.$ref ? (upstream.parameters![p.$ref.split('/').pop()!] as { name: string; in: string }) : p) as { name: string; in: string });
        for (const p of op.parameters) expect(upParams.some((u) => u.name === p.name && u.in === p.in), `${op.operationId} ${p.in} ${p.name}`).to.equal(true);
        seen.push(op.operationId);
      }
    }
    expect(seen.sort()).to.deep.equal([...HARBOR_OPERATIONS].sort());
    for (const [name, schema] of Object.entries(ours.components.schemas)) {
      const up = upstream.definitions[name] as { properties?: Record<string, unknown> } | undefined;
      expect(up, name).to.not.equal(undefined);
      for (const field of Object.keys(schema.properties ?? {})) expect(up!.properties, `${name}.${field}`).to.have.property(field);
    }
    expect(deriveSpec(upstream).components).to.deep.equal(ours.components);
  });

  describe('against a Harbor double that checks every request against the spec', () => {
    let harbor: HarborDouble;
    let setup: HarborSetup;
    beforeEach(async () => {
      harbor = await startHarborDouble(UPSTREAM, ADMIN);
      setup = new HarborSetup(createHarborClient({ url: harbor.url, ...ADMIN }));
    });
    afterEach(async () => {
      expect(harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
      await harbor.close();
    });

    it('when a group is set up, then the endpoint is a Docker Registry and the rule keeps the source path (No Flattening)', async () => {
      const registryId = await setup.ensureRegistry({ name: 'satellite', url: 'http://satellite.example:8080', accessKey: 'harbor', accessSecret: 's3cret-s3cret' });
      const policyId = await setup.ensureGroupPolicy({ group: 'edge-eu', registryId, filters: [{ type: 'name', value: 'library/**' }] });
      expect(harbor.registries[0]).to.deep.include({ name: 'satellite', type: 'docker-registry', url: 'http://satellite.example:8080' });
      expect(harbor.policies[0]).to.deep.include({
        id: policyId, name: 'satellite-edge-eu', dest_namespace: 'edge-eu', dest_namespace_replace_count: 0,
        replicate_deletion: true, enabled: true, trigger: { type: 'event_based' },
      });
      expect(await setup.startReplication(policyId)).to.be.a('number');
      expect(await setup.latestExecution(policyId)).to.deep.include({ policy_id: policyId, trigger: 'manual' });
    });

    it('when setup runs again, then nothing is duplicated and a rule edited by hand to flatten is put back', async () => {
      const registryId = await setup.ensureRegistry({ name: 'satellite', url: 'http://s:8080', accessKey: 'harbor', accessSecret: 'x-x-x-x-x-x-x' });
      const policyId = await setup.ensureGroupPolicy({ group: 'edge-us', registryId, filters: [] });
      harbor.policies[0]!.dest_namespace_replace_count = 1; // someone chose "Flatten 1 level" in the UI
      expect(await setup.ensureRegistry({ name: 'satellite', url: 'http://s:8080', accessKey: 'harbor', accessSecret: 'x-x-x-x-x-x-x' })).to.equal(registryId);
      expect(await setup.ensureGroupPolicy({ group: 'edge-us', registryId, filters: [] })).to.equal(policyId);
      expect(harbor.registries).to.have.length(1);
      expect(harbor.policies).to.have.length(1);
      expect(harbor.policies[0]!.dest_namespace_replace_count).to.equal(0);
      expect(harbor.calls).to.include('updateReplicationPolicy');
    });

    it('when the state project is made, then it is private, and made once', async () => {
      expect(await setup.ensureProject('satellite')).to.equal('created');
      expect(await setup.ensureProject('satellite')).to.equal('exists');
      expect(harbor.projects).to.have.length(1);
      expect(harbor.projects[0]).to.deep.include({ project_name: 'satellite', metadata: { public: 'false' } });
    });

    it('when an artifact is looked up by digest in a nested repository, then the name is encoded as Harbor wants', async () => {
      const digest = `sha256:${'a'.repeat(64)}`;
      harbor.addArtifact({ repository: 'library/team/nginx', digest, type: 'IMAGE' });
      expect(await setup.findArtifact('library', 'team/nginx', digest)).to.deep.include({ digest, type: 'IMAGE' });
      expect(await setup.findArtifact('library', 'team/nginx', `sha256:${'b'.repeat(64)}`)).to.equal(undefined);
    });

    it('when Harbor\'s lists are longer than a page, then every page is read, as the headers of each page tell', async () => {
      const digests = Array.from({ length: 150 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`);
      for (const digest of digests) harbor.addArtifact({ repository: 'library/bulk', digest });
      // Harbor's paging: X-Total-Count is the whole list, Link the neighbouring pages.
      const client = createHarborClient({ url: harbor.url, ...ADMIN });
      const page = (n: number) => client.GET('/projects/{project_name}/repositories/{repository_name}/artifacts', {
        params: { path: { project_name: 'library', repository_name: 'bulk' }, query: { page: n, page_size: 100 } },
      });
      const one = await page(1);
      expect(one.data).to.have.length(100);
      expect(one.response.headers.get('x-total-count')).to.equal('150');
      expect(one.response.headers.get('link')).to.equal('</api/v2.0/projects/library/repositories/bulk/artifacts?page=2&page_size=100>; rel="next"');
      const two = await page(2);
      expect(two.data).to.have.length(50);
      expect(two.response.headers.get('x-total-count')).to.equal('150');
      expect(two.response.headers.get('link')).to.equal('</api/v2.0/projects/library/repositories/bulk/artifacts?page=1&page_size=100>; rel="prev"');
      expect((await setup.artifacts('library', 'bulk')).map((a) => a.digest)).to.deep.equal(digests);

      for (let i = 0; i < 120; i++) await setup.ensureProject(`team-${String(i).padStart(3, '0')}`);
      const projects = await setup.projectNames();
      expect(projects).to.have.length(121);
      expect(projects).to.include('team-119');

      for (let i = 0; i < 105; i++) {
        await setup.ensureWebhookPolicy('library', { name: `hook-${i}`, address: 'http://hooks.example/x', authHeader: 'x', eventTypes: ['PUSH_ARTIFACT'] });
      }
      const last = harbor.webhooks.find((w) => w.name === 'hook-104')!;
      expect(await setup.webhookPolicyId('library', 'hook-104')).to.equal(last.id);
    });

    it('when a request breaks the spec, then the double refuses it (so the checks above mean something)', async () => {
      const client = createHarborClient({ url: harbor.url, ...ADMIN });
      const bad = await client.POST('/replication/policies', { body: { name: 'x', dest_namespace_replace_count: '0' as unknown as number } });
      expect(bad.response.status).to.equal(400);
      expect(harbor.violations.splice(0)).to.have.length(1);
      const typo = await client.POST('/projects', { body: { project_name: 'p', publik: true } as never });
      expect(typo.response.status).to.equal(400);
      expect(harbor.violations.splice(0)[0]).to.include('publik');
      const anon = new HarborSetup(createHarborClient({ url: harbor.url, username: 'admin', password: 'wrong' }));
      await anon.ensureProject('p').then(() => expect.fail('accepted'), (e: unknown) => expect((e as HarborApiError).status).to.equal(401));
    });
  });
});

describe('satellite harbor setup', function () {
  this.timeout(30_000);
  let harbor: HarborDouble;
  beforeEach(async () => {
    harbor = await startHarborDouble(UPSTREAM, ADMIN);
  });
  afterEach(async () => {
    expect(harbor.violations).to.deep.equal([]);
    await harbor.close();
  });

  it('when an operator runs harbor setup for a group, then Harbor gets the endpoint, a No-Flattening rule and the state project', async () => {
    const { satellite } = await import('../support/run.js');
    const env = { HARBOR_URL: harbor.url, HARBOR_PASSWORD: ADMIN.password, ENDPOINT_URL: 'http://satellite.example:8080', ENDPOINT_PASSWORD: 'endpoint-secret-123' };
    const { stdout } = await satellite(['harbor', 'setup', 'edge-eu', '--filter', 'library/**', '--replicate'], env);
    expect(stdout).to.include('No Flattening').and.include('replication started');
    expect(harbor.registries[0]).to.deep.include({ url: 'http://satellite.example:8080', insecure: true, credential: { type: 'basic', access_key: 'harbor', access_secret: '*****' } });
    expect(harbor.policies[0]).to.deep.include({ dest_namespace: 'edge-eu', dest_namespace_replace_count: 0, filters: [{ type: 'name', value: 'library/**' }] });
    expect(harbor.projects[0]).to.deep.include({ project_name: 'satellite' });
  });

  it('when Harbor credentials are missing, then the command names what to set', async () => {
    const { satellite } = await import('../support/run.js');
    await satellite(['harbor', 'setup', 'edge-eu'], { HARBOR_URL: '', HARBOR_PASSWORD: '', ENDPOINT_URL: 'http://s:8080', ENDPOINT_PASSWORD: 'endpoint-secret-123' }).then(
      () => expect.fail('should refuse'),
      (e: { code: number; stderr: string }) => {
        expect(e.code).to.equal(78);
        expect(e.stderr).to.include('HARBOR_URL').and.include('HARBOR_PASSWORD');
      },
    );
  });
});
