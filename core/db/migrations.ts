// Schema migrations, applied in order, each once, each in its own transaction. Never edit
// a migration that has shipped: add the next one.

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'groups, artifacts, tags, index children, change log, outbox, uploads',
    sql: `
      CREATE TABLE groups (
        name        text PRIMARY KEY,
        created_at  timestamptz NOT NULL DEFAULT now()
      );

      -- One row per manifest a group holds, keyed by the source repository and digest.
      -- body is the exact bytes received, served back by GET/HEAD.
      CREATE TABLE artifacts (
        group_name      text NOT NULL REFERENCES groups(name),
        repository      text NOT NULL,
        digest          text NOT NULL,
        media_type      text NOT NULL,
        kind            text NOT NULL CHECK (kind IN ('IMAGE','SIGNATURE','SBOM','CHART','ARTIFACT')),
        artifact_type   text,
        size            integer NOT NULL,
        body            bytea NOT NULL,
        subject_digest  text,
        annotations     jsonb,
        deleted         boolean NOT NULL DEFAULT false,
        deleted_at      timestamptz,
        deleted_tags    text[] NOT NULL DEFAULT '{}',
        first_seen      timestamptz NOT NULL DEFAULT now(),
        last_seen       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (group_name, repository, digest)
      );
      CREATE INDEX artifacts_subject ON artifacts (group_name, repository, subject_digest)
        WHERE subject_digest IS NOT NULL;

      CREATE TABLE tags (
        group_name  text NOT NULL,
        repository  text NOT NULL,
        tag         text NOT NULL,
        digest      text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (group_name, repository, tag),
        FOREIGN KEY (group_name, repository, digest) REFERENCES artifacts (group_name, repository, digest)
      );
      CREATE INDEX tags_digest ON tags (group_name, repository, digest);

      -- The manifests an index lists, with their platforms, in the index's order.
      CREATE TABLE index_children (
        group_name    text NOT NULL,
        repository    text NOT NULL,
        index_digest  text NOT NULL,
        position      integer NOT NULL,
        child_digest  text NOT NULL,
        media_type    text NOT NULL,
        size          bigint NOT NULL,
        platform      jsonb,
        PRIMARY KEY (group_name, repository, index_digest, position),
        FOREIGN KEY (group_name, repository, index_digest) REFERENCES artifacts (group_name, repository, digest)
      );
      CREATE INDEX index_children_child ON index_children (group_name, repository, child_digest);

      -- What happened, in order: the audit trail of every recorded change.
      CREATE TABLE change_log (
        id          bigserial PRIMARY KEY,
        group_name  text NOT NULL,
        action      text NOT NULL CHECK (action IN ('put','delete','untag')),
        repository  text NOT NULL,
        digest      text NOT NULL,
        tag         text,
        at          timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX change_log_group ON change_log (group_name, id);

      -- Transactional outbox: written with the change, consumed by the worker, which turns
      -- each dirty group into one state build. A Redis outage delays it; nothing is lost.
      CREATE TABLE outbox (
        id          bigserial PRIMARY KEY,
        group_name  text NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      );

      -- Chunked blob uploads in progress: only the running hash, never the bytes.
      CREATE TABLE uploads (
        id          uuid PRIMARY KEY,
        repository  text NOT NULL,
        hash_state  bytea NOT NULL,
        size        bigint NOT NULL DEFAULT 0,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 2,
    name: 'published state versions',
    sql: `
      -- One row per state version of a group. A version is allocated (pending) before its
      -- artifact is pushed and reused by every retry for the same content, so a publish
      -- that fails half-way ends as exactly one version, never two.
      CREATE TABLE state_versions (
        group_name       text NOT NULL REFERENCES groups(name),
        version          integer NOT NULL CHECK (version > 0),
        content_digest   text NOT NULL,
        status           text NOT NULL CHECK (status IN ('pending','published','abandoned')),
        layout           text NOT NULL,
        repository       text NOT NULL,
        artifact_count   integer NOT NULL,
        manifest_digest  text,
        created_at       timestamptz NOT NULL DEFAULT date_trunc('second', now()),
        published_at     timestamptz,
        pruned_at        timestamptz,
        PRIMARY KEY (group_name, version)
      );
    `,
  },
  {
    version: 3,
    name: 'per-group endpoint credentials',
    sql: `
      -- A credential that may write one group only: Harbor registers one endpoint per group
      -- with it, so a rule aimed at one group can never write another group's list.
      -- The secret is kept as scrypt$N$r$p$salt$hash, never in clear.
      CREATE TABLE group_credentials (
        username     text PRIMARY KEY,
        group_name   text NOT NULL UNIQUE,
        secret_hash  text NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 4,
    name: 'when each group was last rendered, for the reconcile pass',
    sql: `
      -- Set when a build reads the group; the reconcile pass rebuilds only groups changed
      -- (or with a tombstone expired) since, instead of every group every time.
      ALTER TABLE groups ADD COLUMN checked_at timestamptz;
      CREATE INDEX change_log_group_at ON change_log (group_name, at);
      CREATE INDEX artifacts_tombstones ON artifacts (group_name, deleted_at) WHERE deleted;
    `,
  },
  {
    version: 5,
    name: 'the last change each group has in its published state',
    sql: `
      -- The newest change_log id whose effect is in the group's published \`latest\`, set only
      -- after a build succeeded (published, unchanged or repaired). A group with a newer
      -- change is stale whatever happened to the jobs that should have built it.
      ALTER TABLE groups ADD COLUMN built_change_id bigint NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 6,
    name: 'the package of the newest versions',
    sql: `
      -- The exact manifest and blobs a version was pushed as, kept for the newest published
      -- version and pending ones: a retry or a repair pushes the very same bytes (its version
      -- tag stays immutable), and the next version's delta is computed against it.
      ALTER TABLE state_versions ADD COLUMN manifest bytea, ADD COLUMN blobs bytea[];
    `,
  },
  {
    version: 20,
    name: 'Harbor integration: managed groups, webhooks, satellites, registration tokens, Harbor jobs, artifact metadata',
    sql: `
      -- Groups run through the admin API: their replication rule in Harbor and its settings.
      -- A deleted group keeps its row (deleted_at), so its last states still name it.
      CREATE TABLE group_policies (
        group_name   text PRIMARY KEY REFERENCES groups(name),
        policy_id    bigint,
        registry_id  bigint,
        filters      jsonb NOT NULL DEFAULT '[]',
        trigger      jsonb NOT NULL DEFAULT '{"type":"event_based"}',
        projects     text[] NOT NULL DEFAULT '{}',
        adopted      boolean NOT NULL DEFAULT false,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        deleted_at   timestamptz
      );
      CREATE UNIQUE INDEX group_policies_policy ON group_policies (policy_id) WHERE deleted_at IS NULL;

      -- One webhook policy per source project, shared by the groups replicating from it.
      -- Harbor sends its secret as the Authorization header; only its SHA-256 is kept.
      CREATE TABLE webhook_policies (
        project      text PRIMARY KEY,
        harbor_id    bigint NOT NULL,
        secret_hash  bytea NOT NULL UNIQUE,
        created_at   timestamptz NOT NULL DEFAULT now()
      );

      -- Satellites and the Harbor robot each pulls with (only a SHA-256 of its secret is kept,
      -- to authenticate its status reports); robot_projects is what Harbor was last told.
      CREATE TABLE satellites (
        name               text PRIMARY KEY,
        robot_id           bigint,
        robot_name         text UNIQUE,
        robot_secret_hash  bytea,
        robot_projects     text[] NOT NULL DEFAULT '{}',
        created_at         timestamptz NOT NULL DEFAULT now(),
        registered_at      timestamptz,
        revoked_at         timestamptz,
        last_seen          timestamptz,
        report             jsonb,
        reported_at        timestamptz
      );
      CREATE TABLE satellite_groups (
        satellite   text NOT NULL REFERENCES satellites(name) ON DELETE CASCADE,
        group_name  text NOT NULL REFERENCES groups(name),
        PRIMARY KEY (satellite, group_name)
      );
      CREATE INDEX satellite_groups_group ON satellite_groups (group_name);

      -- One-time registration tokens, kept as SHA-256 of the random token shown once.
      CREATE TABLE registration_tokens (
        token_hash  bytea PRIMARY KEY,
        satellite   text NOT NULL REFERENCES satellites(name) ON DELETE CASCADE,
        expires_at  timestamptz NOT NULL,
        used_at     timestamptz,
        revoked_at  timestamptz,
        created_at  timestamptz NOT NULL DEFAULT now()
      );

      -- Jobs for the Harbor queue, written in the transaction of the change that needs them
      -- (a webhook, a deleted group) and relayed by the worker: nothing is lost to Redis.
      CREATE TABLE harbor_outbox (
        id          bigserial PRIMARY KEY,
        job         text NOT NULL,
        data        jsonb NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
      );

      -- What Harbor knows of an artifact and the endpoint cannot see: its labels, and the
      -- platform of a single-platform image (from the config blob Harbor read).
      CREATE TABLE harbor_artifacts (
        repository  text NOT NULL,
        digest      text NOT NULL,
        labels      text[],
        platform    jsonb,
        checked_at  timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (repository, digest)
      );
    `,
  },
  {
    version: 40,
    name: 'upload sessions: owner and digest algorithm; idle sessions found by age',
    sql: `
      -- Sessions are capped per credential (owner) and expire after minutes of idleness;
      -- algorithm is the one chosen at POST (?digest-algorithm=, spec end-4c), and hash_state
      -- is that algorithm's running state.
      ALTER TABLE uploads ADD COLUMN owner text NOT NULL DEFAULT 'endpoint';
      ALTER TABLE uploads ADD COLUMN algorithm text NOT NULL DEFAULT 'sha256' CHECK (algorithm IN ('sha256','sha512'));
      CREATE INDEX uploads_owner ON uploads (owner, updated_at);
      CREATE INDEX uploads_updated ON uploads (updated_at);
    `,
  },
  {
    version: 41,
    name: 'blob sizes named by recorded manifests and finished uploads',
    sql: `
      -- What a blob HEAD answers as Content-Length. A digest names immutable content, so a
      -- size once learnt stays true; rows are written once (ON CONFLICT DO NOTHING), so
      -- re-sending the same manifests adds nothing.
      CREATE TABLE blob_sizes (
        group_name  text NOT NULL,
        repository  text NOT NULL,
        digest      text NOT NULL,
        size        bigint NOT NULL CHECK (size >= 0),
        PRIMARY KEY (group_name, repository, digest)
      );
    `,
  },
  {
    version: 60,
    name: 'manifests a moved tag left behind, and where each tag pointed before',
    sql: `
      -- A manifest a PUT moved a tag away from, and when (clock time, taken once the move
      -- holds the tag's row). States stop listing it once nothing names it any more: no tag
      -- (tagged again after the move counts), no index, no signature (SUPERSEDED_MANIFESTS).
      -- Written with an upsert, so a move that races with the PUT of the manifest it leaves
      -- behind still records it.
      CREATE TABLE superseded_manifests (
        group_name     text NOT NULL,
        repository     text NOT NULL,
        digest         text NOT NULL,
        superseded_at  timestamptz NOT NULL,
        PRIMARY KEY (group_name, repository, digest),
        FOREIGN KEY (group_name, repository, digest) REFERENCES artifacts (group_name, repository, digest) ON DELETE CASCADE
      );
      CREATE INDEX superseded_manifests_at ON superseded_manifests (group_name, superseded_at);
      -- When a PUT last tagged the manifest (clock time): a tag move older than that is void.
      ALTER TABLE artifacts ADD COLUMN tagged_at timestamptz;
      -- The digest the tag named before its last move: the tag upsert reads it from the row
      -- it locks, so concurrent moves of one tag each learn the manifest they leave behind.
      ALTER TABLE tags ADD COLUMN previous_digest text;
      -- The same, kept in the audit trail.
      ALTER TABLE change_log ADD COLUMN previous_digest text;
    `,
  },
  {
    version: 61,
    name: 'manifests left behind by tag moves before version 60',
    sql: `
      -- Untagged manifests whose change log still says which tag they had, a tag that names
      -- another digest now: they were superseded before that was recorded.
      INSERT INTO superseded_manifests (group_name, repository, digest, superseded_at)
      SELECT a.group_name, a.repository, a.digest, now() FROM artifacts a
       WHERE NOT a.deleted
         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.group_name = a.group_name AND t.repository = a.repository AND t.digest = a.digest)
         AND EXISTS (SELECT 1 FROM change_log c
                       JOIN tags t ON t.group_name = c.group_name AND t.repository = c.repository AND t.tag = c.tag
                      WHERE c.group_name = a.group_name AND c.repository = a.repository AND c.digest = a.digest
                        AND c.action = 'put' AND t.digest <> a.digest)
      ON CONFLICT DO NOTHING;
    `,
  },
  {
    version: 62,
    name: 'wake the outbox relay when a change commits',
    sql: `
      -- Every outbox row notifies channel satellite_outbox with its group once its
      -- transaction commits (Postgres folds identical notifications of one transaction), so
      -- the relay wakes at once instead of polling. The outbox stays the durable record: a
      -- notification lost with a connection only delays the relay to its next poll.
      CREATE FUNCTION satellite_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify('satellite_outbox', NEW.group_name);
        RETURN NULL;
      END $$;
      CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION satellite_outbox_notify();
      -- The relay looks for the groups whose changes have settled, by group and time.
      CREATE INDEX outbox_group ON outbox (group_name, created_at);
    `,
  },
  {
    version: 63,
    name: 'the transaction of each change, for builds that read only what changed',
    sql: `
      -- A build remembers the oldest transaction still running when it read the group
      -- (pg_snapshot_xmin); the next build reads the changes of that transaction and later
      -- ones, which covers every change the first could not see, whatever order they
      -- committed in (ids come from a sequence, so a smaller id can commit later).
      ALTER TABLE change_log ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
      CREATE INDEX change_log_group_xid ON change_log (group_name, xid);
    `,
  },
  {
    version: 64,
    name: 'kept packages are stored as they are',
    sql: `
      -- A package's layers are gzip'd already: storing them without a compression attempt
      -- saves the CPU pglz would spend failing on several MB per build.
      ALTER TABLE state_versions ALTER COLUMN blobs SET STORAGE EXTERNAL;
    `,
  },
  {
    version: 65,
    name: 'allocate a state version in one round trip',
    sql: `
      -- StateStore.allocate as one call: a build made five round trips (BEGIN, lock, read,
      -- insert, COMMIT) for it. Each statement of a plpgsql function reads after the lock is
      -- held (a fresh snapshot per statement under READ COMMITTED). outcome: 'unchanged'
      -- (the content is published), 'reused' (the pending version of the same content),
      -- 'new'.
      CREATE FUNCTION satellite_allocate(p_group text, p_content text, p_layout text, p_repository text, p_count integer, p_fresh boolean)
        RETURNS TABLE (outcome text, group_name text, version integer, content_digest text, status text, layout text, repository text,
                       artifact_count integer, manifest_digest text, created_at timestamptz, published_at timestamptz)
        LANGUAGE plpgsql AS $$
      DECLARE
        last state_versions%ROWTYPE;
        same boolean;
      BEGIN
        PERFORM pg_advisory_xact_lock(hashtext('satellite-state:' || p_group));
        SELECT * INTO last FROM state_versions s WHERE s.group_name = p_group AND s.status <> 'abandoned' ORDER BY s.version DESC LIMIT 1;
        same := FOUND AND last.content_digest = p_content AND last.layout = p_layout AND last.repository = p_repository;
        IF same AND (last.status = 'pending' OR (last.status = 'published' AND NOT p_fresh)) THEN
          RETURN QUERY SELECT CASE WHEN last.status = 'pending' THEN 'reused' ELSE 'unchanged' END, last.group_name, last.version,
            last.content_digest, last.status, last.layout, last.repository, last.artifact_count, last.manifest_digest, last.created_at, last.published_at;
          RETURN;
        END IF;
        IF FOUND AND last.status = 'pending' THEN
          UPDATE state_versions s SET status = 'abandoned' WHERE s.group_name = p_group AND s.version = last.version;
        END IF;
        RETURN QUERY
          INSERT INTO state_versions AS s (group_name, version, content_digest, status, layout, repository, artifact_count)
          SELECT p_group, COALESCE(MAX(x.version), 0) + 1, p_content, 'pending', p_layout, p_repository, p_count
            FROM state_versions x WHERE x.group_name = p_group
          RETURNING 'new'::text, s.group_name, s.version, s.content_digest, s.status, s.layout, s.repository, s.artifact_count,
                    s.manifest_digest, s.created_at, s.published_at;
      END $$;
    `,
  },
  {
    version: 66,
    name: 'the transaction of each change of what Harbor says of an artifact',
    sql: `
      -- Labels and platforms come from Harbor's reconciliation, not from a logged change: a
      -- build that reads only what changed since its last snapshot finds them by transaction.
      ALTER TABLE harbor_artifacts ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
      CREATE INDEX harbor_artifacts_xid ON harbor_artifacts (xid);
      CREATE FUNCTION satellite_harbor_artifacts_xid() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        NEW.xid := pg_current_xact_id();
        RETURN NEW;
      END $$;
      CREATE TRIGGER harbor_artifacts_xid BEFORE UPDATE ON harbor_artifacts FOR EACH ROW EXECUTE FUNCTION satellite_harbor_artifacts_xid();
    `,
  },
  {
    version: 67,
    name: 'the snapshot a published state was read at',
    sql: `
      -- A worker that holds nothing of a group (just started, or the group was last built by
      -- another replica) takes up the newest published version's kept package and reads only
      -- the changes since the snapshot that version was read at, instead of the whole group.
      ALTER TABLE state_versions ADD COLUMN read_xmin xid8, ADD COLUMN read_at timestamptz;
    `,
  },
  {
    version: 68,
    name: 'the snapshot the published state of each group was read at',
    sql: `
      -- Change ids are taken when a write starts, not when it commits: a change that commits
      -- after a later one can sit below built_change_id without being in any published state.
      -- The snapshot a successful build read tells exactly which changes it saw.
      ALTER TABLE groups ADD COLUMN built_snapshot pg_snapshot;
    `,
  },
  {
    version: 69,
    name: 'the id of this deployment',
    sql: `
      -- One row: what tells this deployment from another on the same Redis. The default
      -- queue prefix is made of it, and every job carries it, so a worker refuses another
      -- deployment's jobs. Made once, here; never changed (a new id would orphan the jobs
      -- waiting under the old prefix).
      CREATE TABLE deployment (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        id text NOT NULL CHECK (id ~ '^[0-9a-f]{16}$'),
        created_at timestamptz NOT NULL DEFAULT now()
      );
      INSERT INTO deployment (id) VALUES (substr(replace(gen_random_uuid()::text, '-', ''), 1, 16));
    `,
  },
  {
    version: 70,
    name: 'when each satellite applied each version of its groups (the dashboard\'s convergence over time)',
    sql: `
      -- A report says only what a satellite runs now; the dashboard's chart of convergence
      -- after each publish needs when it reached each version. One row per satellite, group
      -- and version, the first report of it; the newest 50 versions per satellite and group.
      CREATE TABLE satellite_applied (
        satellite   text NOT NULL REFERENCES satellites(name) ON DELETE CASCADE,
        group_name  text NOT NULL,
        version     integer NOT NULL,
        applied_at  timestamptz NOT NULL,
        PRIMARY KEY (satellite, group_name, version)
      );
      CREATE INDEX satellite_applied_at ON satellite_applied (applied_at);
    `,
  },
  {
    version: 71,
    name: 'the size of each version\'s state artifact',
    sql: `
      -- The dashboard lists versions with their size. The manifest and blobs a version was
      -- pushed as are let go by the pruner, so the size is kept beside them, from the bytes
      -- still held where they are.
      ALTER TABLE state_versions ADD COLUMN bytes bigint CHECK (bytes >= 0);
      UPDATE state_versions SET bytes = octet_length(manifest)
        + COALESCE((SELECT sum(octet_length(b)) FROM unnest(blobs) AS b), 0)
        WHERE manifest IS NOT NULL;
    `,
  },
  {
    version: 72,
    name: 'each artifact carries its live tags (kept by triggers on tags)',
    sql: `
      -- A group's listing aggregated every tag of the group per artifact at each full read:
      -- the largest part of a 100,000-entry listing's backend CPU. The tags of each artifact
      -- are kept on its row instead (in no particular order; the state sorts them), by
      -- triggers on tags, so every writer of tags keeps them, whatever statement it is. The
      -- triggers are per statement, over the rows it changed (a bulk write is one UPDATE),
      -- and change each array in place: an UPDATE re-reads a row another transaction
      -- changed meanwhile, so concurrent writers of one artifact's tags each see the other's.
      ALTER TABLE artifacts ADD COLUMN live_tags text[] NOT NULL DEFAULT '{}';
      UPDATE artifacts a SET live_tags = t.tags
        FROM (SELECT group_name, repository, digest, array_agg(tag) AS tags FROM tags GROUP BY 1, 2, 3) t
       WHERE a.group_name = t.group_name AND a.repository = t.repository AND a.digest = t.digest;

      CREATE FUNCTION tags_added() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE artifacts a SET live_tags = a.live_tags || n.tags
          FROM (SELECT group_name, repository, digest, array_agg(tag) AS tags FROM added GROUP BY 1, 2, 3) n
         WHERE a.group_name = n.group_name AND a.repository = n.repository AND a.digest = n.digest;
        RETURN NULL;
      END $$;
      CREATE FUNCTION tags_removed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE artifacts a SET live_tags = ARRAY(SELECT x FROM unnest(a.live_tags) AS x WHERE x <> ALL (o.tags))
          FROM (SELECT group_name, repository, digest, array_agg(tag) AS tags FROM removed GROUP BY 1, 2, 3) o
         WHERE a.group_name = o.group_name AND a.repository = o.repository AND a.digest = o.digest;
        RETURN NULL;
      END $$;
      CREATE FUNCTION tags_moved() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE artifacts a SET live_tags = ARRAY(SELECT x FROM unnest(a.live_tags) AS x WHERE x <> ALL (o.tags))
          FROM (SELECT group_name, repository, digest, array_agg(tag) AS tags FROM removed GROUP BY 1, 2, 3) o
         WHERE a.group_name = o.group_name AND a.repository = o.repository AND a.digest = o.digest;
        UPDATE artifacts a SET live_tags = a.live_tags || n.tags
          FROM (SELECT group_name, repository, digest, array_agg(tag) AS tags FROM added GROUP BY 1, 2, 3) n
         WHERE a.group_name = n.group_name AND a.repository = n.repository AND a.digest = n.digest;
        RETURN NULL;
      END $$;
      CREATE TRIGGER tags_added AFTER INSERT ON tags REFERENCING NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION tags_added();
      CREATE TRIGGER tags_removed AFTER DELETE ON tags REFERENCING OLD TABLE AS removed
        FOR EACH STATEMENT EXECUTE FUNCTION tags_removed();
      CREATE TRIGGER tags_moved AFTER UPDATE ON tags REFERENCING OLD TABLE AS removed NEW TABLE AS added
        FOR EACH STATEMENT EXECUTE FUNCTION tags_moved();
    `,
  },
  {
    version: 73,
    name: 'a manifest PUT keeps its tag and wakes the relay for less',
    sql: `
      -- Two costs of every manifest PUT, measured with 16 writers at once (bench/endpoint.ts):
      -- Postgres's CPU per PUT went from 0.73-0.83 ms to about half.
      --
      -- 1. The live-tags triggers of migration 72 fired per statement even when no tag
      --    moved (an upsert fires both the INSERT and the UPDATE statement triggers), and
      --    a new tag was written into its new artifact row by a second UPDATE. Tags are
      --    inserted and moved one row per statement (a PUT), so those two are per row now,
      --    the moved one only when a tag really moved, and each skips an artifact already
      --    carrying the tag (a PUT writes a new artifact's tag into its row as it inserts
      --    it). Removal stays per statement: a group's deletion removes many tags at once.
      DROP TRIGGER tags_added ON tags;
      DROP TRIGGER tags_moved ON tags;
      DROP FUNCTION tags_added();
      DROP FUNCTION tags_moved();
      -- One function for both: a moved tag leaves the artifact it named, then, as a new tag
      -- does, joins the one it names unless that one already carries it.
      CREATE FUNCTION tag_placed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'UPDATE' THEN
          UPDATE artifacts SET live_tags = array_remove(live_tags, OLD.tag)
           WHERE group_name = OLD.group_name AND repository = OLD.repository AND digest = OLD.digest;
        END IF;
        UPDATE artifacts SET live_tags = live_tags || NEW.tag
         WHERE group_name = NEW.group_name AND repository = NEW.repository AND digest = NEW.digest
           AND NOT NEW.tag = ANY (live_tags);
        RETURN NULL;
      END $$;
      CREATE TRIGGER tag_added AFTER INSERT ON tags FOR EACH ROW EXECUTE FUNCTION tag_placed();
      CREATE TRIGGER tag_moved AFTER UPDATE ON tags FOR EACH ROW
        WHEN ((OLD.group_name, OLD.repository, OLD.tag, OLD.digest) IS DISTINCT FROM (NEW.group_name, NEW.repository, NEW.tag, NEW.digest))
        EXECUTE FUNCTION tag_placed();

      -- 2. A NOTIFY takes a lock that its transaction holds until its commit is flushed,
      --    so PUTs that each notified committed one after the other (half the PUTs per
      --    second). The relay needs to hear of a group once per burst: once notified, it
      --    follows the group's waiting rows until they are claimed, and looks again a quiet
      --    period after each claim. So a change whose group has an earlier change (committed,
      --    or its own transaction's) from the last 50 ms does not notify; one that comes
      --    slower than that notifies as before, and the relay's poll stays the safety net.
      CREATE OR REPLACE FUNCTION satellite_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NOT EXISTS (SELECT 1 FROM outbox
                        WHERE group_name = NEW.group_name AND created_at > clock_timestamp() - interval '50 milliseconds'
                          AND id < NEW.id) THEN
          PERFORM pg_notify('satellite_outbox', NEW.group_name);
        END IF;
        RETURN NULL;
      END $$;
    `,
  },
];
