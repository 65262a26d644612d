// The SQL of outbox-store.ts (OutboxStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in outbox-store.ts pass them.

import { prepared } from '../db/pool.js';

/** OutboxStore.claimSettled */
export const CLAIM_SETTLED = prepared(`WITH pending AS (
    SELECT group_name, least(max(created_at) + make_interval(secs => $1 / 1000.0),
                             min(created_at) + make_interval(secs => $2 / 1000.0)) AS settles_at
      FROM outbox GROUP BY group_name
  ), claimed AS (
    DELETE FROM outbox WHERE id IN (
      SELECT id FROM outbox WHERE group_name IN (SELECT group_name FROM pending WHERE settles_at <= now())
       ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
    RETURNING group_name
  )
  SELECT (SELECT array_agg(DISTINCT group_name) FROM claimed) AS groups,
         (SELECT count(*) FROM claimed) AS claimed,
         (SELECT ceil(1000 * extract(epoch FROM min(settles_at) - now()))::float8 FROM pending WHERE settles_at > now()) AS next_ms`);
