// What the Satellite service and its edge agents say to each other over HTTP: both sides
// build or read these shapes, so they are defined once, here.

/** The answer of POST /api/v1/satellites/register: what `satellite agent register` turns into the agent's config file. */
export interface Registration {
  name: string;
  registry: string;
  username: string;
  password: string;
  publicKey: string;
  /**
   * identity: the "host/repository" the worker's signatures of the state name (STATE_REGISTRY's
   * host and the state's repository), whatever name the device reaches the registry by.
   * Absent in answers of services older than this field.
   */
  groups: { name: string; state: string; identity?: string }[];
  statusUrl: string | null;
}

/** The status report an agent posts after each sync (POST /api/v1/satellites/{name}/status). */
export interface StatusReport {
  agentVersion: string;
  syncedAt: string;
  groups: {
    name: string;
    version: number | null;
    digest: string | null;
    appliedAt?: string | null;
    checkedAt?: string | null;
    images: { present: number; pending: number; failed: number };
    failures?: { repository: string; digest: string; reason: string }[];
  }[];
}
