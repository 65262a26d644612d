import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { SECRET_VARIABLES } from '../../core/config.js';
import { configVariables, isLoopback, listeningPorts, processProblems, secretPlaceholder, type ServiceCommand } from '../support/deploy-config.js';
import { schemaProblems, unknownFieldProblems } from '../support/k8s-schema.js';
import { kustomize, type K8sObject } from '../support/kustomize.js';

const exec = promisify(execFile);
const KUBERNETES = 'deploy/kubernetes';
const COMMANDS: readonly string[] = ['serve', 'adapter', 'worker', 'migrate'];
/** Variables that hold a secret, or a URL that carries one: never a literal in the files. */
const SECRET = /(^|_)PASSWORD$|^DATABASE_URL$|^REDIS_URL$/;

// deploy/kubernetes rendered as `kubectl apply -k` would (test/support/kustomize.ts), every
// object checked against the Kubernetes schemas and every container against core/config.ts.

interface Container {
  name: string;
  image?: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { allowPrivilegeEscalation?: boolean; readOnlyRootFilesystem?: boolean; runAsNonRoot?: boolean; capabilities?: { drop?: string[] } };
}
interface Probe {
  httpGet?: { path: string; port: number | string };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; emptyDir?: object; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  automountServiceAccountToken?: boolean;
}

/** Every container of every workload, with the environment it would get and its command. */
interface RunningContainer {
  where: string;
  workload: K8sObject;
  pod: PodSpec;
  container: Container;
  init: boolean;
  command: string;
  env: Record<string, string>;
  /** Variables whose value comes from a Secret (a placeholder in env). */
  fromSecret: Set<string>;
  /** Variables given as a literal value or through a ConfigMap. */
  literal: Set<string>;
  /** Secrets read from a file (<NAME>_FILE), by the file's path. */
  secretFiles: Map<string, string>;
  /** loadConfig's reader of those files: a placeholder of the right shape for each. */
  readSecretFile: (path: string) => string;
}

const podSpecOf = (o: K8sObject): PodSpec | undefined => {
  const spec = o.spec as { template?: { spec?: PodSpec }; jobTemplate?: { spec: { template: { spec: PodSpec } } } } | undefined;
  return spec?.template?.spec ?? spec?.jobTemplate?.spec.template.spec;
};

function containersOf(objects: K8sObject[]): RunningContainer[] {
  const out: RunningContainer[] = [];
  for (const workload of objects) {
    const pod = podSpecOf(workload);
    if (!pod) continue;
    for (const [init, list] of [[true, pod.initContainers ?? []], [false, pod.containers]] as const) {
      for (const container of list) {
        const env: Record<string, string> = {};
        const fromSecret = new Set<string>();
        const literal = new Set<string>();
        for (const from of container.envFrom ?? []) {
          if (from.secretRef) throw new Error(`${workload.metadata.name}/${container.name}: envFrom a Secret hides which variables it sets`);
          const cm = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === from.configMapRef!.name && o.metadata.namespace === workload.metadata.namespace);
          if (!cm) throw new Error(`${workload.metadata.name}/${container.name}: no ConfigMap ${from.configMapRef!.name}`);
          for (const [k, v] of Object.entries((cm.data as Record<string, string>) ?? {})) {
            env[k] = v;
            literal.add(k);
          }
        }
        for (const e of container.env ?? []) {
          if (e.value !== undefined) {
            env[e.name] = e.value;
            literal.add(e.name);
          } else if (e.valueFrom?.secretKeyRef) {
            env[e.name] = secretPlaceholder(e.name);
            fromSecret.add(e.name);
          } else {
            throw new Error(`${workload.metadata.name}/${container.name}: ${e.name} has a source this test does not resolve`);
          }
        }
        // A secret given as <NAME>_FILE is a file of a mounted Secret (checked below).
        const secretFiles = new Map<string, string>();
        for (const name of SECRET_VARIABLES) {
          const path = env[`${name}_FILE`];
          if (path === undefined) continue;
          secretFiles.set(path, name);
          fromSecret.add(name);
        }
        const readSecretFile = (path: string) => {
          const name = secretFiles.get(path);
          if (!name) throw Object.assign(new Error(`no such file: ${path}`), { code: 'ENOENT' });
          return secretPlaceholder(name);
        };
        out.push({
          where: `${workload.kind} ${workload.metadata.name}, container ${container.name}`, workload, pod, container, init,
          command: container.args?.[0] ?? '(image default)', env, fromSecret, literal, secretFiles, readSecretFile,
        });
      }
    }
  }
  return out;
}

/** Every environment variable the objects set (env, and the keys of ConfigMaps given with envFrom) that core/config.ts does not read. */
function unknownVariableProblems(objects: K8sObject[]): string[] {
  const known = configVariables();
  const problems: string[] = [];
  for (const c of containersOf(objects)) {
    for (const name of Object.keys(c.env)) if (!known.has(name)) problems.push(`${c.where}: ${name} is not a variable of core/config.ts`);
  }
  for (const cm of objects.filter((o) => o.kind === 'ConfigMap')) {
    for (const name of Object.keys((cm.data as object) ?? {})) if (!known.has(name)) problems.push(`ConfigMap ${cm.metadata.name}: ${name} is not a variable of core/config.ts`);
  }
  return problems;
}

/** What each container's process needs from core/config.ts, and the ports it must listen on. */
function processConfigProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const c of containersOf(objects)) {
    if (!COMMANDS.includes(c.command)) {
      problems.push(`${c.where}: runs ${c.command}, not one of ${COMMANDS.join(', ')}`);
      continue;
    }
    const command = c.command as ServiceCommand;
    const own = processProblems(command, c.env, { readSecretFile: c.readSecretFile }).map((p) => `${c.where} (satellite ${command}): ${p}`);
    problems.push(...own);
    if (own.length) continue; // this container's: another's problems do not hide its own
    const listening = listeningPorts(command, c.env, { readSecretFile: c.readSecretFile }).filter((p) => !isLoopback(p.host));
    const portOf = (p: number | string) => (typeof p === 'number' ? p : c.container.ports?.find((x) => x.name === p)?.containerPort);
    for (const p of c.container.ports ?? []) {
      if (!listening.some((l) => l.port === p.containerPort)) problems.push(`${c.where}: port ${p.containerPort} is not one the process listens on beyond loopback`);
    }
    for (const [kind, probe] of [['readiness', c.container.readinessProbe], ['liveness', c.container.livenessProbe], ['startup', c.container.startupProbe]] as const) {
      if (!probe?.httpGet) continue;
      const port = portOf(probe.httpGet.port);
      if (!listening.some((l) => l.port === port)) problems.push(`${c.where}: the ${kind} probe's port ${probe.httpGet.port} is not one the process listens on beyond loopback`);
    }
    // A file the configuration names must be in a mounted volume that holds it.
    const secretFileVariables = SECRET_VARIABLES.map((n) => `${n}_FILE`);
    for (const variable of ['COSIGN_KEY', 'COSIGN_PUBLIC_KEY', 'HARBOR_SATELLITE_CONFIG', ...secretFileVariables]) {
      const path = c.env[variable];
      if (!path) continue;
      const mount = c.container.volumeMounts?.find((m) => m.mountPath === dirname(path));
      const volume = c.pod.volumes?.find((v) => v.name === mount?.name);
      const file = path.slice(dirname(path).length + 1);
      if (!mount || !volume) problems.push(`${c.where}: ${variable}=${path} is in no mounted volume`);
      else if (secretFileVariables.includes(variable) && !volume.secret) problems.push(`${c.where}: ${variable}=${path}: volume ${volume.name} is not a Secret`);
      else if (volume.secret?.items && !volume.secret.items.some((i) => i.path === file)) problems.push(`${c.where}: ${variable}=${path}: volume ${volume.name} does not hold ${file}`);
    }
  }
  return problems;
}

describe('deploy/kubernetes, every overlay rendered as kubectl apply -k would', function () {
  this.timeout(120_000);
  let work: string;
  const renders: { name: string; dir: string; objects: K8sObject[] }[] = [];

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'satellite-kustomize-'));
    const dirs: [string, string][] = [
      ['base', `${KUBERNETES}/base`],
      ['overlays/harbor-helm', `${KUBERNETES}/overlays/harbor-helm`],
      ['overlays/external-services', `${KUBERNETES}/overlays/external-services`],
    ];
    // Each overlay with the optional ServiceMonitor, as its README line says to add it.
    for (const overlay of ['harbor-helm', 'external-services']) {
      const dir = join(work, `${overlay}-servicemonitor`);
      await exec('mkdir', ['-p', dir]);
      await writeFile(join(dir, 'kustomization.yaml'), [
        'apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization',
        // Relative paths: kustomize refuses absolute ones.
        `resources: ["${relative(dir, resolve(KUBERNETES, 'overlays', overlay))}"]`,
        `components: ["${relative(dir, resolve(KUBERNETES, 'components/servicemonitor'))}"]`, '',
      ].join('\n'));
      dirs.push([`overlays/${overlay} + components/servicemonitor`, dir]);
    }
    for (const [name, dir] of dirs) renders.push({ name, dir, objects: kustomize(dir) });
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('when each is rendered, then every object validates against the Kubernetes API schemas (kubernetes-models)', () => {
    for (const r of renders) expect(schemaProblems(r.objects), r.name).to.deep.equal([]);
    expect(renders.flatMap((r) => r.objects.map((o) => o.kind))).to.include.members(['Deployment', 'Service', 'ConfigMap', 'PodDisruptionBudget', 'NetworkPolicy', 'ServiceMonitor']);
  });

  it('when each is rendered, then no object has a field the Kubernetes types do not define', () => {
    expect(unknownFieldProblems(renders.flatMap((r) => r.objects))).to.deep.equal([]);
  });

  it('when each is rendered, then every environment variable a container gets, and every key of the ConfigMap, is a variable of core/config.ts', () => {
    for (const r of renders) expect(unknownVariableProblems(r.objects), r.name).to.deep.equal([]);
  });

  it('when each is rendered, then every container runs a satellite command with what core/config.ts requires of it, and listens on every port its probes name', () => {
    for (const r of renders) {
      expect(processConfigProblems(r.objects), r.name).to.deep.equal([]);
      const commands = containersOf(r.objects).map((c) => `${c.init ? 'init ' : ''}${c.command}`);
      expect(commands, r.name).to.include.members(['init migrate', 'adapter', 'worker']);
    }
  });

  it('when each is rendered, then no container sets QUEUE_PREFIX, so two deployments given the same Redis keep their queues apart', () => {
    for (const r of renders) {
      for (const c of containersOf(r.objects)) expect(c.env, `${r.name}: ${c.where}`).not.to.have.property('QUEUE_PREFIX');
    }
  });

  it('when each is rendered, then no Secret is in it and every secret variable comes from a Secret by name', () => {
    for (const r of renders) {
      expect(r.objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name), r.name).to.deep.equal([]);
      for (const c of containersOf(r.objects)) {
        for (const name of c.literal) expect(SECRET.test(name), `${r.name}: ${c.where}: ${name} is given as a literal`).to.equal(false);
      }
      const secretVars = containersOf(r.objects).flatMap((c) => [...c.fromSecret]);
      expect(secretVars, r.name).to.include.members(['DATABASE_URL', 'REDIS_URL', 'ENDPOINT_PASSWORD', 'COSIGN_PASSWORD', 'STATE_REGISTRY_PASSWORD']);
    }
  });

  it('when each is rendered, then every container runs non-root on a read-only root file system, without privilege escalation or capabilities, within requests and limits', () => {
    for (const r of renders) {
      for (const c of containersOf(r.objects)) {
        const at = `${r.name}: ${c.where}`;
        expect(c.pod.securityContext?.runAsNonRoot ?? c.container.securityContext?.runAsNonRoot, at).to.equal(true);
        expect(c.container.securityContext?.readOnlyRootFilesystem, at).to.equal(true);
        expect(c.container.securityContext?.allowPrivilegeEscalation, at).to.equal(false);
        expect(c.container.securityContext?.capabilities?.drop, at).to.include('ALL');
        expect(c.pod.automountServiceAccountToken, at).to.equal(false);
        for (const kind of ['requests', 'limits'] as const) expect(c.container.resources?.[kind], `${at}: ${kind}`).to.have.keys('cpu', 'memory');
        if (!c.init) {
          const tmp = c.container.volumeMounts?.find((m) => m.mountPath === '/tmp');
          expect(c.pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir, `${at}: a writable /tmp`).to.not.equal(undefined);
        }
      }
    }
  });

  it('when each is rendered, then the endpoint runs at least two replicas under a PodDisruptionBudget with /readyz and /healthz probes, and the worker is a Deployment of its own', () => {
    for (const r of renders) {
      const deployments = r.objects.filter((o) => o.kind === 'Deployment');
      const running = (command: string) => deployments.filter((d) => podSpecOf(d)!.containers.some((c) => c.args?.[0] === command));
      const [endpoint] = running('adapter');
      const [worker] = running('worker');
      expect(endpoint, r.name).to.not.equal(undefined);
      expect(worker, r.name).to.not.equal(undefined);
      expect(worker, r.name).to.not.equal(endpoint);
      expect((endpoint!.spec as { replicas: number }).replicas, r.name).to.be.at.least(2);
      const podLabels = (endpoint!.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
      const pdb = r.objects.find((o) => o.kind === 'PodDisruptionBudget' &&
        Object.entries((o.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels).every(([k, v]) => podLabels[k] === v));
      expect(pdb, `${r.name}: a PodDisruptionBudget over the endpoint's pods`).to.not.equal(undefined);
      expect((pdb!.spec as { minAvailable?: number }).minAvailable, r.name).to.be.at.least(1);
      const c = podSpecOf(endpoint!)!.containers[0]!;
      expect(c.readinessProbe?.httpGet?.path, r.name).to.equal('/readyz');
      expect(c.livenessProbe?.httpGet?.path, r.name).to.equal('/healthz');
      for (const d of [endpoint!, worker!]) {
        expect(podSpecOf(d)!.initContainers?.map((i) => i.args?.[0]), `${r.name}: ${d.metadata.name} migrates first`).to.deep.equal(['migrate']);
      }
    }
  });

  it('when a ServiceMonitor is in a render, then the Service it selects reaches the metrics port of pods that listen on it', () => {
    const withMonitor = renders.filter((r) => r.objects.some((o) => o.kind === 'ServiceMonitor'));
    expect(withMonitor.length).to.equal(2);
    for (const r of withMonitor) {
      const monitor = r.objects.find((o) => o.kind === 'ServiceMonitor')!;
      const spec = monitor.spec as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] };
      const services = r.objects.filter((o) => o.kind === 'Service' && Object.entries(spec.selector.matchLabels).every(([k, v]) => o.metadata.labels?.[k] === v));
      expect(services.length, r.name).to.equal(1);
      const svc = services[0]!.spec as { selector: Record<string, string>; ports: { name: string; targetPort: string }[] };
      const port = svc.ports.find((p) => p.name === spec.endpoints[0]!.port)!;
      const pods = r.objects.filter((o) => o.kind === 'Deployment' &&
        Object.entries(svc.selector).every(([k, v]) => (o.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels[k] === v));
      expect(pods.map((p) => p.metadata.name), r.name).to.have.members(['satellite-endpoint', 'satellite-worker']);
      for (const p of pods) expect(podSpecOf(p)!.containers[0]!.ports?.map((x) => x.name), `${r.name}: ${p.metadata.name}`).to.include(port.targetPort);
    }
  });

  it('when a manifest has a misspelt field, a wrong type, an unknown variable or lacks a required one, then the checks above name it', () => {
    const objects = structuredClone(renders.find((r) => r.name === 'overlays/harbor-helm')!.objects);
    const endpoint = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'satellite-endpoint')!;
    const container = podSpecOf(endpoint)!.containers[0]! as Container & Record<string, unknown>;
    container.imagePullPolicyy = 'Always';
    (endpoint.spec as Record<string, unknown>).replicas = 'two';
    container.env = [...container.env!.filter((e) => e.name !== 'ENDPOINT_PASSWORD_FILE'), { name: 'ENDPOINT_PASWORD', value: 'x' }];
    // A secret's file that no Secret volume holds.
    const worker = podSpecOf(objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'satellite-worker')!)!.containers[0]!;
    worker.env = worker.env!.map((e) => (e.name === 'DATABASE_URL_FILE' ? { name: e.name, value: '/tmp/database-url' } : e));
    expect(unknownFieldProblems([endpoint]).join('\n')).to.include('imagePullPolicyy');
    expect(schemaProblems([endpoint]).join('\n')).to.include('replicas must be integer');
    expect(unknownVariableProblems(objects).join('\n')).to.include('ENDPOINT_PASWORD is not a variable of core/config.ts');
    expect(processConfigProblems(objects).join('\n')).to.include('ENDPOINT_PASSWORD is not set');
    expect(processConfigProblems(objects).join('\n')).to.include('DATABASE_URL_FILE=/tmp/database-url: volume tmp is not a Secret');
  });

  it('when kubectl is installed, then kubectl kustomize renders each to the same objects as this test', async function () {
    const kubectl = await exec('kubectl', ['version', '--client']).then(() => true, () => false);
    if (!kubectl) this.skip();
    for (const r of renders) {
      const { stdout } = await exec('kubectl', ['kustomize', r.dir], { maxBuffer: 16 * 1024 * 1024 });
      const theirs = parseAllDocuments(stdout, { version: '1.1' }).map((d) => d.toJS() as K8sObject);
      const key = (o: K8sObject) => `${o.apiVersion}/${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      const sorted = (list: K8sObject[]) => Object.fromEntries(list.map((o) => [key(o), o]));
      expect(sorted(r.objects), r.name).to.deep.equal(sorted(theirs));
    }
  });
});
