import { expect } from 'chai';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient, RegistryRequestError } from '../../core/registry/registry-client.js';
import { startAuthProxy } from '../support/auth-proxy.js';

describe('the registry client against an authenticating registry', () => {
  let registry: LocalRegistry;
  before(async () => {
    registry = await startDockerRegistry();
  });
  after(async () => registry?.stop());

  const roundTrip = async (client: RegistryClient, repo: string) => {
    const layer = Buffer.from(`layer of ${repo}`);
    const digest = await client.pushBlob(repo, layer);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/example',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: await client.pushBlob(repo, Buffer.from('{}')), size: 2 },
      layers: [{ mediaType: 'application/octet-stream', digest, size: layer.length }],
    }));
    const pushed = await client.putManifest(repo, 'latest', manifest, 'application/vnd.oci.image.manifest.v1+json');
    expect((await client.getManifest(repo, 'latest'))!.digest).to.equal(pushed);
    expect((await client.getBlob(repo, digest)).equals(layer)).to.equal(true);
  };

  it('when the registry asks for a Bearer token, then the client gets one from the token service with its credentials, scoped to the repository', async () => {
    const proxy = await startAuthProxy(registry.url, 'bearer', 'robot$satellite', 'robot-secret');
    try {
      await roundTrip(new RegistryClient(proxy.url, { username: 'robot$satellite', password: 'robot-secret' }), 'satellite/group-state/a/state');
      expect(proxy.scopes[0]).to.equal('repository:satellite/group-state/a/state:pull,push');
      expect(proxy.scopes, 'one token is reused for the whole repository').to.have.length(1);
    } finally {
      await proxy.close();
    }
  });

  it('when a token stops being accepted, then the client fetches a new one and retries the request', async () => {
    const proxy = await startAuthProxy(registry.url, 'bearer', 'u', 'p');
    proxy.tokenUses = 2;
    try {
      await roundTrip(new RegistryClient(proxy.url, { username: 'u', password: 'p' }), 'satellite/group-state/b/state');
      expect(proxy.scopes.length).to.be.greaterThan(1);
    } finally {
      await proxy.close();
    }
  });

  it('when the registry asks for Basic, then the client answers with its credentials', async () => {
    const proxy = await startAuthProxy(registry.url, 'basic', 'u', 'p');
    try {
      await roundTrip(new RegistryClient(proxy.url, { username: 'u', password: 'p' }), 'satellite/group-state/c/state');
    } finally {
      await proxy.close();
    }
  });

  it('when the credentials are wrong, then the failure is not retryable and says so', async () => {
    for (const mode of ['bearer', 'basic'] as const) {
      const proxy = await startAuthProxy(registry.url, mode, 'u', 'p');
      try {
        const err = await new RegistryClient(proxy.url, { username: 'u', password: 'wrong' }).pushBlob('x/y', Buffer.from('z')).then(() => undefined, (e: unknown) => e);
        expect(err, mode).to.be.instanceOf(RegistryRequestError);
        expect((err as RegistryRequestError).status).to.equal(401);
        expect((err as RegistryRequestError).retryable).to.equal(false);
      } finally {
        await proxy.close();
      }
    }
  });

  it('when the registry is unreachable, then the failure is retryable', async () => {
    const err = await new RegistryClient('http://127.0.0.1:1').headManifest('x/y', 'latest').then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(RegistryRequestError);
    expect((err as RegistryRequestError).retryable).to.equal(true);
  });
});
