import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadAgentConfig } from '../../agent/config/config.js';
import { schemaProblems, unknownFieldProblems } from '../support/k8s-schema.js';
import { kustomize } from '../support/kustomize.js';

// deploy/kubernetes/agent: the edge agent as a DaemonSet on k3s nodes, rendered as
// `kubectl apply -k` would, checked against the Kubernetes schemas, and its mounts against
// what the agent, configured as the kustomization's comment says, actually writes and reads.

interface Mount { name: string; mountPath: string; readOnly?: boolean }
interface Volume { name: string; hostPath?: { path: string; type?: string }; secret?: { secretName: string; items?: { key: string; path: string }[] }; emptyDir?: object }
interface AgentPod {
  hostNetwork?: boolean;
  volumes: Volume[];
  containers: {
    image: string;
    env: { name: string; value: string }[];
    volumeMounts: Mount[];
    livenessProbe: { httpGet: { host?: string; path: string; port: number } };
    securityContext: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  }[];
}

const K3S = '/var/lib/rancher/k3s/agent/etc/containerd';

describe('the edge agent\'s DaemonSet (deploy/kubernetes/agent)', () => {
  const objects = kustomize('deploy/kubernetes/agent');
  const ds = objects.find((o) => o.kind === 'DaemonSet')!;
  const pod = (ds.spec as { template: { spec: AgentPod } }).template.spec;
  const container = pod.containers[0]!;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satellite-k8s-agent-'));
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('when rendered, then every object is valid against the Kubernetes schemas, with no unknown field', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).to.deep.equal(['Namespace/satellite-edge', 'DaemonSet/satellite-agent']);
    expect(ds.metadata.namespace).to.equal('satellite-edge');
    expect(schemaProblems(objects)).to.deep.equal([]);
    expect(unknownFieldProblems(objects)).to.deep.equal([]);
  });

  it('when an agent is configured as the kustomization says, then it writes hosts.toml into the node\'s containerd certs.d, at the path containerd reads, and every path it writes is a writable mount', async () => {
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value]));
    const configPath = env.SATELLITE_AGENT_CONFIG!;
    const configMount = container.volumeMounts.find((m) => configPath.startsWith(`${m.mountPath}/`))!;
    expect(configMount, 'agent.yaml is mounted').to.not.equal(undefined);
    expect(pod.volumes.find((v) => v.name === configMount.name)!.secret, 'from a Secret (it holds the credential)').to.deep.include({ secretName: 'satellite-agent-config' });

    // What `register` writes, plus the one line the kustomization's comment asks for.
    const file = join(dir, 'agent.yaml');
    const publicKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    await writeFile(file, stringify({
      registry: 'https://harbor.example.com', username: 'robot$satellite+node', password: 'x',
      groups: [{ name: 'edge', state: 'satellite/group-state/edge/state', publicKey }],
      store: '/var/lib/satellite-agent', mirrors: { containerd: `${K3S}/certs.d` },
    }));
    const config = loadAgentConfig(file, env);

    const mountOf = (path: string) => container.volumeMounts.filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    const hostPathOf = (m: Mount | undefined) => pod.volumes.find((v) => v.name === m?.name)?.hostPath?.path;
    for (const [what, path] of [['the store', config.store], ['the hosts directory', config.mirrors.containerd!]] as const) {
      const m = mountOf(path);
      expect(m, `${what} (${path}) is a mount`).to.not.equal(undefined);
      expect(m!.readOnly ?? false, `${what} is writable`).to.equal(false);
      expect(hostPathOf(m), `${what} is the node's, at the same path`).to.equal(path);
    }
    expect(config.mirrors.containerd, 'the directory k3s\'s containerd reads (its config_path)').to.equal(`${K3S}/certs.d`);
    const cfg = mountOf(config.mirrors.containerdConfig);
    expect(hostPathOf(cfg), 'containerd\'s config.toml, checked for config_path, is the node\'s').to.equal(config.mirrors.containerdConfig);
    expect(cfg!.readOnly, 'and never written').to.equal(true);
    expect(container.securityContext).to.deep.include({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    expect(container.securityContext.capabilities?.drop).to.deep.equal(['ALL']);

    // containerd on the node reaches the local server at what hosts.toml names: the node's loopback.
    expect(pod.hostNetwork, 'on the node\'s network').to.equal(true);
    expect(config.listen).to.deep.equal({ host: '127.0.0.1', port: 8585 });
    expect(container.livenessProbe.httpGet).to.deep.include({ host: '127.0.0.1', path: '/healthz', port: config.listen.port });
  });
});
