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
});
