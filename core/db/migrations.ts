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
];
