import { expect } from 'chai';
import pg from 'pg';
import { ADMIN_URL, createTestDatabase } from '../support/db.js';
import { satellite } from '../support/run.js';
import { randomBytes } from 'node:crypto';
import { MIGRATIONS } from '../../core/db/migrations.js';

describe('the satellite command', () => {
  it('when several replicas migrate a new database at once, then all succeed and the schema is applied once', async () => {
    const name = `satellite_test_${randomBytes(6).toString('hex')}`;
    const url = new URL(ADMIN_URL);
    url.pathname = `/${name}`;
    try {
      const runs = await Promise.all([1, 2, 3].map(() => satellite(['migrate'], { DATABASE_URL: url.toString() })));
      const outputs = runs.map((r) => r.stdout.trim()).sort();
      expect(outputs).to.deep.equal([`applied migrations ${MIGRATIONS.map((m) => m.version).join(', ')}`, 'database is up to date', 'database is up to date']);
    } finally {
      const admin = new pg.Client({ connectionString: ADMIN_URL });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    }
  });

  it('when serve starts without ENDPOINT_PASSWORD, then it refuses with a message naming it', async () => {
    const db = await createTestDatabase();
    try {
      await satellite(['serve'], { DATABASE_URL: db.url, ENDPOINT_PASSWORD: '' }).then(
        () => expect.fail('serve should refuse'),
        (err: { code: number; stderr: string }) => {
          expect(err.code).to.equal(78);
          expect(err.stderr).to.include('ENDPOINT_PASSWORD is not set');
        },
      );
    } finally {
      await db.drop();
    }
  });

  it('when a variable is invalid, then the command exits with the list of bad values', async () => {
    await satellite(['list', 'g'], { PORT: '99999', LOG_LEVEL: 'chatty' }).then(
      () => expect.fail('should refuse'),
      (err: { code: number; stderr: string }) => {
        expect(err.code).to.equal(78);
        expect(err.stderr).to.include('PORT="99999"').and.include('LOG_LEVEL="chatty"');
      },
    );
  });

  it('when a group has recorded nothing, then list --json prints an empty first version of its state', async () => {
    const db = await createTestDatabase();
    try {
      const { stdout } = await satellite(['list', 'empty-group', '--json'], { DATABASE_URL: db.url, IMAGE_REGISTRY: 'https://harbor.example.com' });
      expect(stdout).to.equal('{"group":"empty-group","registry":"https://harbor.example.com","version":1,"artifacts":[]}\n');
    } finally {
      await db.drop();
    }
  });

  it('when the worker starts with a missing key or a wrong key password, then it refuses at once and says why', async () => {
    const { testKeys } = await import('../support/worker.js');
    const { rm } = await import('node:fs/promises');
    const db = await createTestDatabase();
    const keys = await testKeys();
    try {
      await satellite(['worker'], { DATABASE_URL: db.url, COSIGN_KEY: '' }).then(
        () => expect.fail('started without a key'),
        (err: { code: number; stderr: string }) => {
          expect(err.code).to.equal(78);
          expect(err.stderr).to.include('COSIGN_KEY is not set');
        },
      );
      await satellite(['worker'], { DATABASE_URL: db.url, COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: 'not-the-password' }).then(
        () => expect.fail('started with a wrong password'),
        (err: { code: number; stderr: string }) => {
          expect(err.code).to.equal(1);
          expect(err.stderr).to.include('wrong password');
        },
      );
    } finally {
      await db.drop();
      await rm(keys.dir, { recursive: true, force: true });
    }
  });

  it('when the command is unknown, then it exits 2 naming it, before the environment is even read', async () => {
    for (const args of [['nonexistent'], ['--json', 'nonexistent', 'x']]) {
      // A bad variable too: the typo is still what the user is told about.
      await satellite(args, { PORT: '99999' }).then(
        () => expect.fail(`satellite ${args.join(' ')} should fail`),
        (err: { code: number; stdout: string; stderr: string }) => {
          expect(err.code).to.equal(2);
          expect(err.stderr).to.match(/^satellite: unknown command "nonexistent"/);
          expect(err.stdout).to.equal('');
        },
      );
    }
  });

  it('when its output is piped into head, then it exits quietly once head has read enough', async () => {
    const db = await createTestDatabase();
    try {
      const { image } = await import('../support/oci.js');
      const { record } = await import('../support/worker.js');
      // Far more than a pipe buffers (64 KiB): the command is still writing when head exits.
      for (let i = 0; i < 1500; i++) await record(db.pool, 'big', `library/app${i}`, image(), `t${i}`);
      const { execFile } = await import('node:child_process');
      const piped = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = execFile('bash', ['-o', 'pipefail', '-c', 'node dist/cli/main.js list big | head -n 2'], { env: { ...process.env, DATABASE_URL: db.url } },
          (err, stdout, stderr) => resolve({ code: err ? (err as { code?: number }).code ?? 1 : 0, stdout, stderr }));
        child.stdin?.end();
      });
      expect(piped.stderr, 'no EPIPE stack').to.equal('');
      expect(piped.code, 'the pipeline succeeds').to.equal(0);
      expect(piped.stdout.split('\n')[0]).to.match(/^REPOSITORY\s+TAGS/);
    } finally {
      await db.drop();
    }
  });
});
