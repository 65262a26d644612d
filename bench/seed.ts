import type { Pool } from '../core/db/pool.js';

// Bulk seeding for the benchmarks: what the endpoint records for `n` pushes into a group,
// written by a few set-based statements instead of n PUTs (seeding 100,000 artifacts
// through the endpoint would take minutes and measure the endpoint, not the build). Every
// row is one the endpoint could have written: image manifests with a real body and the
// digest of that body, tagged; every tenth artifact an index of two platform images, its
// children untagged (pushed first by digest, as Harbor does); one change_log and one
// outbox row per artifact.

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export async function seedGroup(pool: Pool, group: string, n: number, repositories = 100, from = 0): Promise<void> {
  await pool.query('INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING', [group]);
  await pool.query(
    `WITH src AS (
       SELECT i, 'library/app' || (i % $3) AS repository,
              convert_to(json_build_object('schemaVersion', 2, 'mediaType', '${OCI_MANIFEST}',
                'config', json_build_object('mediaType', 'application/vnd.oci.image.config.v1+json',
                  'digest', 'sha256:' || encode(sha256(convert_to($1 || '-config-' || i, 'UTF8')), 'hex'), 'size', 300 + i % 500),
                'layers', json_build_array(json_build_object('mediaType', 'application/vnd.oci.image.layer.v1.tar+gzip',
                  'digest', 'sha256:' || encode(sha256(convert_to($1 || '-layer-' || i, 'UTF8')), 'hex'), 'size', 1000000 + i)))::text, 'UTF8') AS body
         FROM generate_series($4::int, $4::int + $2 - 1) AS i
        WHERE i % 10 <> 0
     ), rows AS (
       SELECT i, repository, body, 'sha256:' || encode(sha256(body), 'hex') AS digest FROM src
     ), a AS (
       INSERT INTO artifacts (group_name, repository, digest, media_type, kind, size, body, tagged_at)
       SELECT $1, repository, digest, '${OCI_MANIFEST}', 'IMAGE', length(body), body, now() FROM rows
     ), t AS (
       INSERT INTO tags (group_name, repository, tag, digest) SELECT $1, repository, 'v' || i, digest FROM rows
     ), l AS (
       INSERT INTO change_log (group_name, action, repository, digest, tag) SELECT $1, 'put', repository, digest, 'v' || i FROM rows
     )
     SELECT 1`,
    [group, n, repositories, from]);
  // Every tenth artifact: an index of two children (amd64, arm64).
  await pool.query(
    `WITH kids AS (
       SELECT i, p, 'library/app' || (i % $3) AS repository,
              convert_to(json_build_object('schemaVersion', 2, 'mediaType', '${OCI_MANIFEST}',
                'config', json_build_object('mediaType', 'application/vnd.oci.image.config.v1+json',
                  'digest', 'sha256:' || encode(sha256(convert_to($1 || '-kconfig-' || i || '-' || p, 'UTF8')), 'hex'), 'size', 400),
                'layers', json_build_array())::text, 'UTF8') AS body
         FROM generate_series($4::int, $4::int + $2 - 1) AS i, generate_series(0, 1) AS p
        WHERE i % 10 = 0
     ), k AS (
       SELECT i, p, repository, body, 'sha256:' || encode(sha256(body), 'hex') AS digest FROM kids
     ), idx AS (
       SELECT i, repository, convert_to(json_build_object('schemaVersion', 2, 'mediaType', '${OCI_INDEX}',
                'manifests', json_agg(json_build_object('mediaType', '${OCI_MANIFEST}', 'digest', digest, 'size', length(body),
                  'platform', json_build_object('architecture', CASE p WHEN 0 THEN 'amd64' ELSE 'arm64' END, 'os', 'linux')) ORDER BY p))::text, 'UTF8') AS body
         FROM k GROUP BY i, repository
     ), ix AS (
       SELECT i, repository, body, 'sha256:' || encode(sha256(body), 'hex') AS digest FROM idx
     ), ak AS (
       INSERT INTO artifacts (group_name, repository, digest, media_type, kind, size, body)
       SELECT $1, repository, digest, '${OCI_MANIFEST}', 'IMAGE', length(body), body FROM k
     ), ai AS (
       INSERT INTO artifacts (group_name, repository, digest, media_type, kind, size, body, tagged_at)
       SELECT $1, repository, digest, '${OCI_INDEX}', 'IMAGE', length(body), body, now() FROM ix
     ), c AS (
       INSERT INTO index_children (group_name, repository, index_digest, position, child_digest, media_type, size, platform)
       SELECT $1, k.repository, ix.digest, k.p, k.digest, '${OCI_MANIFEST}', length(k.body),
              jsonb_build_object('architecture', CASE k.p WHEN 0 THEN 'amd64' ELSE 'arm64' END, 'os', 'linux')
         FROM k JOIN ix USING (i)
     ), t AS (
       INSERT INTO tags (group_name, repository, tag, digest) SELECT $1, repository, 'v' || i, digest FROM ix
     ), l AS (
       INSERT INTO change_log (group_name, action, repository, digest, tag) SELECT $1, 'put', repository, digest, 'v' || i FROM ix
     )
     SELECT 1`,
    [group, n, repositories, from]);
  await pool.query('INSERT INTO outbox (group_name) VALUES ($1)', [group]);
}
