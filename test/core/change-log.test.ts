import { expect } from 'chai';
import { createPool } from '../../core/db/pool.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { StateStore } from '../../core/store/state-store.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image } from '../support/oci.js';
import { record } from '../support/worker.js';

describe('the change log and the outbox', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => db?.drop());

  const count = async (table: 'change_log' | 'outbox') =>
    (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;

  it('when Harbor sends the same manifest with the same tag again, then no change is logged and no build is queued', async () => {
    const img = image();
    await record(db.pool, 'edge', 'library/app', img, '1.0');
    expect([await count('change_log'), await count('outbox')]).to.deep.equal([1, 1]);
    for (let i = 0; i < 20; i++) await record(db.pool, 'edge', 'library/app', img, '1.0');
    await record(db.pool, 'edge', 'library/app', img, null);
    expect([await count('change_log'), await count('outbox')], 'identical re-sends change nothing').to.deep.equal([1, 1]);
  });

  it('when a known manifest gets another tag, or a deleted one comes back, then that is a change', async () => {
    const img = image();
    const store = new ArtifactStore(db.pool);
    await record(db.pool, 'edge', 'library/app', img, '1.0');
    await record(db.pool, 'edge', 'library/app', img, 'stable');
    expect(await count('change_log'), 'new tag').to.equal(2);
    await store.deleteManifest({ group: 'edge', repository: 'library/app' }, img.manifest.digest);
    expect(await count('change_log'), 'delete').to.equal(3);
    await record(db.pool, 'edge', 'library/app', img, null);
    expect(await count('change_log'), 'revived by digest').to.equal(4);
    expect(await count('outbox')).to.equal(4);
  });

  it('when a PUT moves a tag back while another PUT of that tag commits, then both are changes and both queue a build', async () => {
    const d = image();
    const e = image();
    await record(db.pool, 'edge', 'library/app', d, '1.0');
    // A PUT of e:1.0 whose transaction is still open when a PUT of d:1.0 starts: the second
    // one's snapshot says 1.0 already names d, yet it moves 1.0 back from e once e commits.
    const slow = createPool(db.url, 1);
    try {
      await slow.query('BEGIN');
      await record(slow, 'edge', 'library/app', e, '1.0');
      const back = record(db.pool, 'edge', 'library/app', d, '1.0');
      await new Promise((r) => setTimeout(r, 200)); // it waits for e's lock on the tag
      await slow.query('COMMIT');
      await back;
    } finally {
      await slow.end();
    }
    const { rows } = await db.pool.query<{ digest: string; previous_digest: string | null }>('SELECT digest, previous_digest FROM change_log ORDER BY id');
    expect(rows.map((r) => [r.digest, r.previous_digest])).to.deep.equal([
      [d.manifest.digest, null], [e.manifest.digest, d.manifest.digest], [d.manifest.digest, e.manifest.digest],
    ]);
    expect(await count('outbox')).to.equal(3);
  });

  it('when a change commits after a later change of its group was built, then the group stays stale and that change is kept until a build sees it', async () => {
    const states = new StateStore(db.pool);
    await record(db.pool, 'edge', 'library/app', image(), '1');
    await states.markBuilt('edge', await states.buildPoint('edge'));
    // A PUT whose change id is taken first but whose transaction commits last, after a build
    // read the group (and saw a later change with a higher id).
    const slow = createPool(db.url, 1);
    try {
      await slow.query('BEGIN');
      await record(slow, 'edge', 'library/late', image(), '1');
      await record(db.pool, 'edge', 'library/app', image(), '2');
      const point = await states.buildPoint('edge');
      await slow.query('COMMIT');
      await states.markBuilt('edge', point);
    } finally {
      await slow.end();
    }
    const ids = (await db.pool.query<{ repository: string; id: string }>('SELECT repository, id FROM change_log ORDER BY id')).rows;
    expect(ids.map((r) => r.repository), 'the late change has the lower id').to.deep.equal(['library/app', 'library/late', 'library/app']);
    expect(await states.staleGroups(168), 'the built snapshot did not see the late change').to.deep.equal(['edge']);
    await db.pool.query("UPDATE change_log SET at = now() - interval '3 hours'");
    expect(await states.pruneChangeLog(2), 'only the changes the build saw').to.equal(2);
    expect(await count('change_log')).to.equal(1);
    await states.markBuilt('edge', await states.buildPoint('edge'));
    expect(await states.staleGroups(168), 'a build that saw it').to.deep.equal([]);
    expect(await states.pruneChangeLog(2)).to.equal(1);
  });

  it('when published changes are older than the retention, then they are pruned, and unpublished ones stay and keep their group stale', async () => {
    const states = new StateStore(db.pool);
    await record(db.pool, 'built', 'library/app', image(), '1');
    await record(db.pool, 'built', 'library/app', image(), '2');
    await states.markBuilt('built', await states.buildPoint('built'));
    await record(db.pool, 'built', 'library/app', image(), '3'); // not yet published
    await record(db.pool, 'never', 'library/app', image(), '1');
    await db.pool.query("UPDATE change_log SET at = now() - interval '3 hours'");
    expect(await states.pruneChangeLog(2)).to.equal(2);
    const { rows } = await db.pool.query<{ group_name: string; tag: string }>('SELECT group_name, tag FROM change_log ORDER BY id');
    expect(rows).to.deep.equal([{ group_name: 'built', tag: '3' }, { group_name: 'never', tag: '1' }]);
    expect(await states.staleGroups(168)).to.deep.equal(['built', 'never']);
    expect(await states.pruneChangeLog(4), 'younger than the retention: kept').to.equal(0);
  });
});
