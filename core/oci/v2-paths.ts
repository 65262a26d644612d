// The paths of the OCI distribution API, named once for both /v2 servers (the endpoint's
// route table, adapter/routes.ts, and the agent's read-only server, agent/serve/server.ts),
// as distribution names them in registry/api/v2/routes.go. A repository name may contain
// slashes, so a path is matched on its tail; the name is checked against the spec's grammar
// by whoever serves it, which also refuses traversal such as "a/../b".

export const V2_PATHS = {
  tags: /^\/v2\/(?<name>.+)\/tags\/list$/,
  manifest: /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/,
  uploadStart: /^\/v2\/(?<name>.+)\/blobs\/uploads\/?$/,
  upload: /^\/v2\/(?<name>.+)\/blobs\/uploads\/(?<id>[^/]+)$/,
  blob: /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/,
  referrers: /^\/v2\/(?<name>.+)\/referrers\/(?<digest>[^/]+)$/,
} as const;
