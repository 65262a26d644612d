// The SQL of upload-store.ts (UploadStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in upload-store.ts pass them.

/** UploadStore.get */
export const GET = `SELECT id, repository, algorithm, hash_state, size FROM uploads
  WHERE id = $1 AND repository = $2 AND updated_at >= now() - make_interval(mins => $3)`;
