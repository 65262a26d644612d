import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import {
  composeSchemaProblems, environmentOf, interpolatedVariables, interpolate, loadCompose, InterpolationError, type ComposeFile, type ComposeService,
} from '../support/compose.js';
import { SECRET_VARIABLES } from '../../core/config.js';
import { configVariables, isLoopback, listeningPorts, processProblems, secretPlaceholder, type ServiceCommand } from '../support/deploy-config.js';

const COMPOSE = 'deploy/compose/compose.yaml';
const SECRET = /(^|_)PASSWORD$|^DATABASE_URL$|^REDIS_URL$/;
/**
 * What Harbor's installer names its services and containers (goharbor/harbor,
 * make/photon/prepare/templates/docker_compose/docker-compose.yml.jinja): on harbor_harbor,
 * each of these resolves to Harbor's container, so no service of ours may take one.
 */
const HARBOR_NAMES = [
  'log', 'registry', 'registryctl', 'postgresql', 'core', 'portal', 'jobservice', 'redis', 'proxy', 'trivy-adapter',
  'harbor-log', 'harbor-db', 'harbor-core', 'harbor-portal', 'harbor-jobservice', 'nginx', 'notary-server', 'notary-signer',
];

// deploy/compose/compose.yaml read as `docker compose config` would (merge keys, then
// interpolation from the environment), checked against the Compose Specification's schema
// and against core/config.ts.

/** A value for each variable the file requires, as an operator's .env would give. */
function operatorEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, { required }] of interpolatedVariables(text)) {
    if (!required) continue;
    env[name] = name.endsWith('_URL') ? `https://${name.toLowerCase().replace(/_/g, '-')}.example.com` : secretPlaceholder(name);
  }
  return env;
}

const ours = (doc: ComposeFile) =>
  Object.entries(doc.services).filter(([, s]) => s.image?.includes('/satellite-for-harbor:')) as [string, ComposeService][];
const commandOf = (s: ComposeService) => (Array.isArray(s.command) ? s.command[0] : s.command?.split(' ')[0]) ?? '(image default)';
const networksOf = (s: ComposeService) => (Array.isArray(s.networks) ? s.networks : Object.keys(s.networks ?? {}));

function unknownVariableProblems(doc: ComposeFile): string[] {
  const known = configVariables();
  return ours(doc).flatMap(([name, s]) =>
    Object.keys(environmentOf(s)).filter((v) => !known.has(v)).map((v) => `${name}: ${v} is not a variable of core/config.ts`));
}

describe('deploy/compose/compose.yaml, next to Harbor installed with its installer', () => {
  const text = readFileSync(COMPOSE, 'utf8');
  const env = operatorEnv(text);
  const doc = loadCompose(COMPOSE, env);

  it('when read as docker compose would, then it validates against the Compose Specification schema', () => {
    expect(composeSchemaProblems(doc)).to.deep.equal([]);
    expect(ours(doc).map(([name]) => name)).to.have.members(['satellite-migrate', 'satellite-endpoint', 'satellite-worker']);
  });

  it('when read, then the endpoint and the worker join the network Harbor\'s installer makes and reach Harbor\'s core by its service name, and no service of ours takes a name of Harbor\'s', () => {
    const [key, network] = Object.entries(doc.networks ?? {}).find(([, n]) => n?.external === true)!;
    expect(network).to.deep.equal({ name: 'harbor_harbor', external: true });
    for (const name of ['satellite-endpoint', 'satellite-worker']) {
      const s = doc.services[name]!;
      expect(networksOf(s), name).to.include(key);
      const e = environmentOf(s);
      for (const variable of ['STATE_REGISTRY', 'HARBOR_URL']) {
        // Harbor's core listens on 8080 inside the network; nginx ("proxy") forwards to it too.
        expect(['core:8080', 'proxy:8080'], `${name}: ${variable}=${e[variable]}`).to.include(new URL(e[variable]!).host);
      }
    }
    for (const [name, s] of Object.entries(doc.services)) {
      expect(HARBOR_NAMES, `service ${name}`).to.not.include(name);
      if (typeof s.container_name === 'string') expect(HARBOR_NAMES, `container ${s.container_name}`).to.not.include(s.container_name);
    }
  });

  it('when read, then every variable a container of the service image gets is a variable of core/config.ts, and each command has what core/config.ts requires of it', () => {
    expect(unknownVariableProblems(doc)).to.deep.equal([]);
    for (const [name, s] of ours(doc)) {
      const command = commandOf(s) as ServiceCommand;
      expect(['migrate', 'adapter', 'worker', 'serve'], name).to.include(command);
      const e = environmentOf(s);
      // A secret's file is a compose secret the service mounts: read as a placeholder.
      const secretFiles = new Map(SECRET_VARIABLES.filter((v) => e[`${v}_FILE`]).map((v) => [e[`${v}_FILE`]!, v]));
      const readSecretFile = (path: string) => {
        const variable = secretFiles.get(path);
        if (!variable) throw Object.assign(new Error(`no such file: ${path}`), { code: 'ENOENT' });
        return secretPlaceholder(variable);
      };
      expect(processProblems(command, e, { readSecretFile }), name).to.deep.equal([]);
      // A published port is one the process listens on beyond loopback.
      for (const p of s.ports ?? []) {
        const target = typeof p === 'object' ? p.target : Number(String(p).split(':').pop());
        expect(listeningPorts(command, e, { readSecretFile }).some((l) => l.port === target && !isLoopback(l.host)), `${name}: port ${target}`).to.equal(true);
      }
      // A file the configuration names is a secret the service mounts (/run/secrets/<name>).
      const mounted = (s.secrets ?? []).map((x) => (typeof x === 'string' ? x : x.source));
      for (const variable of ['COSIGN_KEY', 'COSIGN_PUBLIC_KEY', ...SECRET_VARIABLES.map((v) => `${v}_FILE`)]) {
        if (!e[variable]) continue;
        const secret = /^\/run\/secrets\/([^/]+)$/.exec(e[variable]!)?.[1];
        expect(mounted, `${name}: ${variable}=${e[variable]}`).to.include(secret);
        expect(doc.secrets?.[secret!]?.file, `${name}: secret ${secret}`).to.be.a('string');
      }
    }
  });

  it('when read, then no container sets QUEUE_PREFIX, so two deployments given the same Redis keep their queues apart', () => {
    for (const [name, s] of ours(doc)) expect(environmentOf(s), name).not.to.have.property('QUEUE_PREFIX');
  });

  it('when read, then no secret is written in it: each is a variable compose refuses to start without, or a secret file', () => {
    const raw = parse(text, { merge: true }) as ComposeFile;
    for (const [name, s] of Object.entries(raw.services)) {
      for (const [variable, value] of Object.entries(environmentOf(s))) {
        if (!SECRET.test(variable)) continue;
        // A password, or the password in a URL (satellite-redis has none: it is reached on
        // the private network only).
        const userinfo = value.includes('@') ? value.slice(value.indexOf('://') + 3, value.lastIndexOf('@')) : '';
        const secret = variable.endsWith('_URL') ? (userinfo.includes(':') ? userinfo.slice(userinfo.indexOf(':') + 1) : undefined) : value;
        // Only a variable: required (${X:?…}), or optional with nothing as its default.
        if (secret !== undefined) expect(secret, `${name}: ${variable}`).to.match(/^\$\{[A-Z_]+(?::\?[^}]*|:-)?\}$/);
      }
    }
    for (const variable of ['ENDPOINT_PASSWORD', 'STATE_REGISTRY_PASSWORD', 'POSTGRES_PASSWORD']) {
      const without = { ...env };
      delete without[variable];
      expect(() => loadCompose(COMPOSE, without), variable).to.throw(InterpolationError, variable);
    }
  });

  it('when read, then every container of the service image has a read-only root, /tmp in memory, no capabilities and no new privileges, and the endpoint and worker start once migrate succeeded', () => {
    for (const [name, s] of ours(doc)) {
      expect(s.read_only, name).to.equal(true);
      expect([s.tmpfs].flat(), name).to.include('/tmp');
      expect(s.cap_drop, name).to.include('ALL');
      expect(s.security_opt, name).to.include('no-new-privileges:true');
    }
    for (const name of ['satellite-endpoint', 'satellite-worker']) {
      expect((doc.services[name]!.depends_on as Record<string, { condition: string }>)['satellite-migrate'], name)
        .to.deep.equal({ condition: 'service_completed_successfully' });
    }
  });

  it('when the file has a misspelt key, an unknown variable or a missing one, then the checks above name it', () => {
    const broken = structuredClone(doc) as ComposeFile;
    const endpoint = broken.services['satellite-endpoint']!;
    endpoint.read_onyl = true;
    const e = environmentOf(endpoint);
    delete e.ENDPOINT_PASSWORD;
    endpoint.environment = { ...e, ENDPOINT_PASWORD: 'x' };
    expect(composeSchemaProblems(broken).join('\n')).to.include('read_onyl');
    expect(unknownVariableProblems(broken).join('\n')).to.include('ENDPOINT_PASWORD');
    expect(processProblems('adapter', environmentOf(endpoint)).join('\n')).to.include('ENDPOINT_PASSWORD is not set');
    expect(interpolate('a$$b ${X:-d} ${Y}', { Y: 'y' })).to.equal('a$b d y');
  });
});
