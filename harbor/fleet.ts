// The fleet view: how far each satellite is from the latest state of each of its groups,
// from what it last reported. Pure: the satellite service gives it the report and the
// latest published versions.

import type { StatusReport } from '../core/satellite-protocol.js';

export type { StatusReport };

/** A Harbor Satellite heartbeat (POST /satellites/sync), stored as reported. */
export interface HarborSatelliteHeartbeat {
  kind: 'harbor-satellite';
  name: string;
  activity?: string;
  latest_state_digest?: string;
  latest_config_digest?: string;
  image_count?: number;
  cached_images?: { reference: string; size_bytes: number }[];
  [key: string]: unknown;
}

export type GroupDriftStatus = 'up to date' | 'behind' | 'failing' | 'nothing applied' | 'not reported' | 'no state yet';

export interface GroupDrift {
  group: string;
  latestVersion: number | null;
  appliedVersion: number | null;
  /** Versions between what is applied and the latest (0 when up to date). */
  behind: number | null;
  failedImages: number;
  status: GroupDriftStatus;
  /** For people: "up to date", "behind by 2 versions", "failing (3 images)". */
  summary: string;
}

export type SatelliteStatus = 'up to date' | 'behind' | 'failing' | 'never reported' | 'not registered' | 'revoked' | 'reporting';

const ORDER: GroupDriftStatus[] = ['failing', 'behind', 'nothing applied', 'not reported', 'no state yet', 'up to date'];

export function groupDrift(group: string, latest: { version: number; digest: string | null } | undefined, reported: StatusReport['groups'][number] | undefined,
  appliedByDigest: number | undefined): GroupDrift {
  const latestVersion = latest?.version ?? null;
  if (!reported) return { group, latestVersion, appliedVersion: null, behind: null, failedImages: 0, status: 'not reported', summary: 'not reported' };
  const failedImages = Math.max(reported.images.failed, reported.failures?.length ?? 0);
  const appliedVersion = appliedByDigest ?? reported.version ?? null;
  const behind = latestVersion === null || appliedVersion === null ? null : Math.max(0, latestVersion - appliedVersion);
  let status: GroupDriftStatus;
  let summary: string;
  if (failedImages > 0) {
    status = 'failing';
    summary = `failing (${failedImages} image${failedImages === 1 ? '' : 's'})`;
  } else if (latestVersion === null) {
    status = 'no state yet';
    summary = 'no state published yet';
  } else if (appliedVersion === null) {
    status = 'nothing applied';
    summary = 'nothing applied yet';
  } else if (behind! > 0) {
    status = 'behind';
    summary = `behind by ${behind} version${behind === 1 ? '' : 's'}`;
  } else {
    status = 'up to date';
    summary = 'up to date';
  }
  return { group, latestVersion, appliedVersion, behind, failedImages, status, summary };
}

/** The satellite's status: its worst group's. */
export function satelliteStatus(drift: readonly GroupDrift[]): SatelliteStatus {
  const worst = [...drift].sort((a, b) => ORDER.indexOf(a.status) - ORDER.indexOf(b.status))[0];
  if (!worst || worst.status === 'up to date' || worst.status === 'no state yet') return 'up to date';
  if (worst.status === 'failing') return 'failing';
  // A group missing from a report is one the satellite has not taken up yet.
  return 'behind';
}
