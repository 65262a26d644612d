import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

// Renders a kustomization the way `kubectl apply -k` does, for the features
// deploy/kubernetes uses: resources (files and directories), components, patches (strategic
// merge, from a file), namespace, replicas and images, applied in kustomize's order
// (resources, then components, then patches, namespace, replicas, images).
//
// Written by hand because no npm package implements kustomize (its only implementation is
// the Go one, in kubectl and the kustomize binary, neither in npm nor in Debian 12, whose
// kubernetes-client is 1.20). It refuses every kustomization field, patch directive and
// list merge it does not implement, rather than render something kustomize would not; and
// where kubectl is installed, the Kubernetes test compares its output with kubectl
// kustomize's, object for object.

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

/** Kinds the manifests use that have no namespace. */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PriorityClass', 'StorageClass']);

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'components', 'patches', 'namespace', 'replicas', 'images']);

/**
 * Lists whose items a strategic merge patch merges by a key (the patchMergeKey of the
 * Kubernetes API types), by the name of the field holding the list. Every other list the
 * manifests patch is replaced whole, as Kubernetes does for lists without a merge key.
 */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name', initContainers: 'name', env: 'name', volumes: 'name', volumeMounts: 'mountPath', imagePullSecrets: 'name',
};
const REPLACED_LISTS = new Set(['ingress', 'egress', 'from', 'to', 'ports', 'args', 'command', 'policyTypes', 'endpoints', 'items', 'drop', 'add']);

export class KustomizeError extends Error {}

export function readYamlObjects(path: string): K8sObject[] {
  // YAML 1.1, as kubectl reads manifests: defaultMode: 0440 is octal there.
  return parseAllDocuments(readFileSync(path, 'utf8'), { version: '1.1' }).flatMap((d) => {
    if (d.errors.length) throw new KustomizeError(`${path}: ${d.errors[0]!.message}`);
    const v = d.toJS();
    return v === null ? [] : [v as K8sObject];
  });
}

function kustomizationFile(dir: string): string {
  for (const name of ['kustomization.yaml', 'kustomization.yml', 'Kustomization']) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  throw new KustomizeError(`${dir}: no kustomization.yaml`);
}

/** The objects `kubectl kustomize <dir>` prints (in resource order, not kubectl's sorted order). */
export function kustomize(dir: string): K8sObject[] {
  return build(resolve(dir), 'Kustomization', []);
}

function build(dir: string, expectedKind: 'Kustomization' | 'Component', accumulated: K8sObject[]): K8sObject[] {
  const file = kustomizationFile(dir);
  const k = readYamlObjects(file)[0] as unknown as Record<string, unknown>;
  for (const key of Object.keys(k)) if (!SUPPORTED.has(key)) throw new KustomizeError(`${file}: ${key} is not supported by this renderer`);
  if ((k.kind ?? 'Kustomization') !== expectedKind) throw new KustomizeError(`${file}: expected kind ${expectedKind}, got ${String(k.kind)}`);

  let objects = accumulated;
  for (const entry of (k.resources as string[] | undefined) ?? []) {
    const path = resolve(dir, entry);
    const added = statSync(path).isDirectory() ? build(path, 'Kustomization', []) : readYamlObjects(path);
    for (const o of added) {
      if (objects.some((x) => sameObject(x, o))) throw new KustomizeError(`${file}: ${id(o)} is listed twice`);
    }
    objects = [...objects, ...added];
  }
  for (const entry of (k.components as string[] | undefined) ?? []) objects = build(resolve(dir, entry), 'Component', objects);

  for (const p of (k.patches as { path?: string; target?: unknown; patch?: string; options?: unknown }[] | undefined) ?? []) {
    if (!p.path || p.target !== undefined || p.patch !== undefined || p.options !== undefined) {
      throw new KustomizeError(`${file}: only patches given by path, matched by their own kind and name, are supported`);
    }
    for (const patch of readYamlObjects(resolve(dir, p.path))) {
      const target = objects.find((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name && group(o) === group(patch));
      if (!target) throw new KustomizeError(`${file}: patch ${p.path} matches no ${patch.kind} ${patch.metadata.name}`);
      objects = objects.map((o) => (o === target ? (merge(o, patch, []) as K8sObject) : o));
    }
  }
  if (typeof k.namespace === 'string') {
    const ns = k.namespace;
    objects = objects.map((o) => (CLUSTER_SCOPED.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace: ns } }));
  }
  for (const r of (k.replicas as { name: string; count: number }[] | undefined) ?? []) {
    const target = objects.find((o) => o.metadata.name === r.name && ['Deployment', 'StatefulSet', 'ReplicaSet'].includes(o.kind));
    if (!target) throw new KustomizeError(`${file}: replicas names no workload ${r.name}`);
    objects = objects.map((o) => (o === target ? { ...o, spec: { ...(o.spec as object), replicas: r.count } } : o));
  }
  for (const img of (k.images as { name: string; newName?: string; newTag?: string; digest?: string }[] | undefined) ?? []) {
    objects = objects.map((o) => setImage(o, img));
  }
  return objects;
}

const group = (o: K8sObject) => (o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '');
const id = (o: K8sObject) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const sameObject = (a: K8sObject, b: K8sObject) =>
  a.kind === b.kind && group(a) === group(b) && a.metadata.name === b.metadata.name && (a.metadata.namespace ?? '') === (b.metadata.namespace ?? '');

/** A strategic merge patch (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/). */
function merge(base: unknown, patch: unknown, path: string[]): unknown {
  if (patch === null) return undefined; // null deletes the field
  if (Array.isArray(patch)) {
    const field = path[path.length - 1]!;
    const key = MERGE_KEYS[field];
    if (key !== undefined && Array.isArray(base)) {
      const out = [...base];
      for (const item of patch) {
        const i = out.findIndex((b) => b?.[key] === item?.[key]);
        if (i >= 0) out[i] = merge(out[i], item, path);
        else out.push(item);
      }
      return out;
    }
    if (key === undefined && !REPLACED_LISTS.has(field)) throw new KustomizeError(`patch of the list ${path.join('.')}: its merge rule is not known to this renderer`);
    return patch;
  }
  if (typeof patch === 'object') {
    for (const k of Object.keys(patch as object)) if (k.startsWith('$')) throw new KustomizeError(`patch directive ${k} at ${path.join('.')} is not supported`);
    const out: Record<string, unknown> = typeof base === 'object' && base !== null && !Array.isArray(base) ? { ...(base as object) } : {};
    for (const [k, v] of Object.entries(patch as object)) {
      const merged = merge(out[k], v, [...path, k]);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
    return out;
  }
  return patch;
}

/** kustomize's images transformer, on the images of containers and init containers. */
function setImage(o: K8sObject, img: { name: string; newName?: string; newTag?: string; digest?: string }): K8sObject {
  const spec = (o.spec as { template?: { spec?: Record<string, unknown> } } | undefined)?.template?.spec;
  if (!spec) return o;
  const rewrite = (containers: { image?: string }[] | undefined) =>
    containers?.map((c) => {
      if (!c.image) return c;
      const m = /^(.*?)(?::([^:/@]+))?(?:@(.+))?$/.exec(c.image)!;
      if (m[1] !== img.name) return c;
      const name = img.newName ?? m[1];
      const ref = img.digest ? `${name}@${img.digest}` : `${name}${img.newTag ?? m[2] ? `:${img.newTag ?? m[2]}` : ''}`;
      return { ...c, image: ref };
    });
  const template = (o.spec as { template: Record<string, unknown> }).template;
  return {
    ...o,
    spec: {
      ...(o.spec as object),
      template: {
        ...template,
        spec: {
          ...spec,
          ...(spec.containers ? { containers: rewrite(spec.containers as { image?: string }[]) } : {}),
          ...(spec.initContainers ? { initContainers: rewrite(spec.initContainers as { image?: string }[]) } : {}),
        },
      },
    },
  };
}
