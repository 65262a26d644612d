import { inTransaction, query, translate, type Client, type Pool } from '../db/pool.js';
import * as sql from './satellite-store.sql.js';

// Satellites, their groups, their one-time registration tokens and the Harbor robot each
// pulls with. Tokens and robot secrets are random; only their SHA-256 is stored. All SQL
// about satellites goes through here (the longer statements are in satellite-store.sql.ts).

export interface RobotRecord {
  id: number;
  name: string;
  secretHash: Buffer;
  projects: string[];
}

export interface SatelliteRecord {
  name: string;
  groups: string[];
  robot: Omit<RobotRecord, 'secretHash'> | null;
  createdAt: Date;
  registeredAt: Date | null;
  revokedAt: Date | null;
  lastSeen: Date | null;
  report: unknown;
  reportedAt: Date | null;
}

export class SatelliteExistsError extends Error {
  constructor(readonly satellite: string) {
    super(`satellite ${satellite} exists`);
    this.name = 'SatelliteExistsError';
  }
}

type Row = {
  name: string; groups: string[] | null; robot_id: string | null; robot_name: string | null; robot_projects: string[];
  created_at: Date; registered_at: Date | null; revoked_at: Date | null; last_seen: Date | null; report: unknown; reported_at: Date | null;
};


const fromRow = (r: Row): SatelliteRecord => ({
  name: r.name,
  groups: r.groups ?? [],
  robot: r.robot_id === null ? null : { id: Number(r.robot_id), name: r.robot_name ?? '', projects: r.robot_projects },
  createdAt: r.created_at, registeredAt: r.registered_at, revokedAt: r.revoked_at, lastSeen: r.last_seen,
  report: r.report, reportedAt: r.reported_at,
});

export type TokenProblem = 'unknown' | 'used' | 'expired' | 'revoked';

export class SatelliteStore {
  constructor(private readonly pool: Pool) {}

  async get(name: string, c?: Client): Promise<SatelliteRecord | undefined> {
    const { rows } = await query<Row>(c ?? this.pool, `${sql.SATELLITES} WHERE s.name = $1`, [name]);
    return rows[0] && fromRow(rows[0]);
  }

  async list(): Promise<SatelliteRecord[]> {
    const { rows } = await query<Row>(this.pool, `${sql.SATELLITES} ORDER BY s.name`);
    return rows.map(fromRow);
  }

  /** Live satellites of a group. */
  async ofGroup(group: string): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool, sql.OF_GROUP, [group]);
    return rows.map((r) => r.name);
  }

  /** Registered, live satellites (those with a robot). */
  async registered(): Promise<string[]> {
    const { rows } = await query<{ name: string }>(this.pool,
      'SELECT name FROM satellites WHERE robot_id IS NOT NULL AND revoked_at IS NULL ORDER BY name');
    return rows.map((r) => r.name);
  }

  /**
   * A new satellite (or a revoked one brought back) with its groups and a first token.
   * Throws SatelliteExistsError when a live satellite has that name.
   */
  async create(name: string, groups: readonly string[], tokenHash: Buffer, expiresAt: Date): Promise<void> {
    await inTransaction(this.pool, async (c) => {
      const { rowCount } = await c.query(sql.CREATE, [name]);
      if (rowCount !== 1) throw new SatelliteExistsError(name);
      await c.query('DELETE FROM satellite_groups WHERE satellite = $1', [name]);
      await c.query('INSERT INTO satellite_groups (satellite, group_name) SELECT $1, unnest($2::text[])', [name, groups]);
      await c.query('UPDATE registration_tokens SET revoked_at = now() WHERE satellite = $1 AND used_at IS NULL AND revoked_at IS NULL', [name]);
      await c.query('INSERT INTO registration_tokens (token_hash, satellite, expires_at) VALUES ($1, $2, $3)', [tokenHash, name, expiresAt]);
    });
  }

  /** A fresh token for a live satellite; earlier unused ones stop working. False when no such satellite. */
  async issueToken(name: string, tokenHash: Buffer, expiresAt: Date): Promise<boolean> {
    return inTransaction(this.pool, async (c) => {
      const { rowCount } = await c.query('SELECT 1 FROM satellites WHERE name = $1 AND revoked_at IS NULL FOR UPDATE', [name]);
      if (rowCount !== 1) return false;
      await c.query('UPDATE registration_tokens SET revoked_at = now() WHERE satellite = $1 AND used_at IS NULL AND revoked_at IS NULL', [name]);
      await c.query('INSERT INTO registration_tokens (token_hash, satellite, expires_at) VALUES ($1, $2, $3)', [tokenHash, name, expiresAt]);
      return true;
    });
  }

  /**
   * Uses a registration token once. Inside one transaction holding the token's and the
   * satellite's rows: `register` runs (it creates the robot in Harbor and answers what to
   * store); only when it succeeds is the robot stored and the token marked used. A failure
   * (Harbor down) leaves the token usable; a second use waits for the first and is refused.
   */
  async claimToken<T>(tokenHash: Buffer, register: (satellite: SatelliteRecord) => Promise<{ robot: RobotRecord; answer: T }>): Promise<{ ok: true; answer: T } | { ok: false; problem: TokenProblem }> {
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ satellite: string; expired: boolean; used_at: Date | null; revoked_at: Date | null; sat_revoked: Date | null }>(sql.CLAIM_TOKEN, [tokenHash]);
      const t = rows[0];
      if (!t) return { ok: false as const, problem: 'unknown' as const };
      if (t.used_at) return { ok: false as const, problem: 'used' as const };
      if (t.revoked_at || t.sat_revoked) return { ok: false as const, problem: 'revoked' as const };
      if (t.expired) return { ok: false as const, problem: 'expired' as const };
      const satellite = (await this.get(t.satellite, c))!;
      const { robot, answer } = await register(satellite);
      await this.storeRobot(t.satellite, robot, c);
      await c.query('UPDATE satellites SET registered_at = now() WHERE name = $1', [t.satellite]);
      await c.query('UPDATE registration_tokens SET used_at = now() WHERE token_hash = $1', [tokenHash]);
      return { ok: true as const, answer };
    });
  }

  /** Runs `fn` holding the satellite's row, so robot changes of one satellite never interleave. */
  async withLock<T>(name: string, fn: (satellite: SatelliteRecord, c: Client) => Promise<T>): Promise<T | undefined> {
    return inTransaction(this.pool, async (c) => {
      const { rowCount } = await c.query('SELECT 1 FROM satellites WHERE name = $1 AND revoked_at IS NULL FOR UPDATE', [name]);
      if (rowCount !== 1) return undefined;
      return fn((await this.get(name, c))!, c);
    });
  }

  async storeRobot(name: string, robot: RobotRecord, c?: Client): Promise<void> {
    await query(c ?? this.pool,
      'UPDATE satellites SET robot_id = $2, robot_name = $3, robot_secret_hash = $4, robot_projects = $5 WHERE name = $1',
      [name, robot.id, robot.name, robot.secretHash, robot.projects]);
  }

  async setRobotProjects(name: string, projects: readonly string[], c?: Client): Promise<void> {
    await query(c ?? this.pool, 'UPDATE satellites SET robot_projects = $2 WHERE name = $1', [name, projects]);
  }

  async setGroups(name: string, groups: readonly string[], c: Client): Promise<void> {
    await c.query('DELETE FROM satellite_groups WHERE satellite = $1', [name]);
    await c.query('INSERT INTO satellite_groups (satellite, group_name) SELECT $1, unnest($2::text[])', [name, groups]);
  }

  /** Revokes a satellite: its robot is forgotten and its tokens stop working. */
  async revoke(name: string, c?: Client): Promise<void> {
    try {
      await (c ?? this.pool).query(sql.REVOKE, [name]);
    } catch (err) {
      throw translate(err);
    }
  }

  /** The satellite a robot belongs to, with the hash of its secret. */
  async byRobot(robotName: string): Promise<{ name: string; secretHash: Buffer } | undefined> {
    const { rows } = await query<{ name: string; robot_secret_hash: Buffer }>(this.pool,
      'SELECT name, robot_secret_hash FROM satellites WHERE robot_name = $1 AND revoked_at IS NULL AND robot_secret_hash IS NOT NULL', [robotName]);
    return rows[0] && { name: rows[0].name, secretHash: rows[0].robot_secret_hash };
  }

  /** Stores what a satellite reported about itself; it was seen now. */
  async recordReport(name: string, report: unknown): Promise<void> {
    await query(this.pool, 'UPDATE satellites SET report = $2, reported_at = now(), last_seen = now() WHERE name = $1', [name, JSON.stringify(report)]);
  }

  /** Published versions of groups, for the drift of what satellites report: group → [version, digest]. */
  async latestVersions(groups: readonly string[]): Promise<Map<string, { version: number; digest: string | null }>> {
    const { rows } = await query<{ group_name: string; version: number; manifest_digest: string | null }>(this.pool, sql.LATEST_VERSIONS, [groups]);
    return new Map(rows.map((r) => [r.group_name, { version: r.version, digest: r.manifest_digest }]));
  }

  /** The published version a state digest is, per group (a satellite reports the digest it applied). */
  async versionOfDigest(group: string, digest: string): Promise<number | undefined> {
    const { rows } = await query<{ version: number }>(this.pool,
      "SELECT version FROM state_versions WHERE group_name = $1 AND manifest_digest = $2 AND status = 'published'", [group, digest]);
    return rows[0]?.version;
  }
}
