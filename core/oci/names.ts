// Names and tags as the OCI distribution spec defines them ("Pulling manifests").
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
const NAME = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;

/** Docker's and distribution's limit on a full repository name. */
export const MAX_NAME_LENGTH = 255;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function isTag(tag: string): boolean {
  return TAG.test(tag);
}

export interface GroupPath {
  group: string;
  /** The repository in Harbor the artifact came from, e.g. "library/nginx". */
  repository: string;
}

export type GroupPathProblem = 'no-group' | 'no-project';

/**
 * Splits a destination repository into the group (the rule's destination namespace, the
 * first component) and the source repository (the rest). Harbor repositories always live
 * in a project, so the source needs two components: fewer means the replication rule
 * flattened the path and the source can no longer be told from the name.
 */
export function splitGroupPath(name: string): GroupPath | GroupPathProblem {
  const slash = name.indexOf('/');
  if (slash < 0) return 'no-group';
  const repository = name.slice(slash + 1);
  if (!repository.includes('/')) return 'no-project';
  return { group: name.slice(0, slash), repository };
}
