import { resolve } from 'node:path';
import ts from 'typescript';
import { ConfigMap, Namespace, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import type { K8sObject } from './kustomize.js';

// Kubernetes objects checked offline against the API's own schemas, from kubernetes-models
// (generated from Kubernetes' OpenAPI document, and the Prometheus Operator's CRDs) in two
// ways: its validators (types, required fields, formats) and, because those let an unknown
// field through as the OpenAPI schemas do (the API server would drop a misspelt field
// silently, or refuse it with strict field validation), TypeScript's excess property check
// of each object against the same package's type declarations.

interface Kind {
  model: new (data: never) => { validate(): void };
  /** Module and interface of the object's type declaration. */
  type: [string, string];
}

const KINDS: Record<string, Kind> = {
  'v1/ConfigMap': { model: ConfigMap, type: ['kubernetes-models/v1/ConfigMap', 'IConfigMap'] },
  'v1/Namespace': { model: Namespace, type: ['kubernetes-models/v1/Namespace', 'INamespace'] },
  'v1/Service': { model: Service, type: ['kubernetes-models/v1/Service', 'IService'] },
  'v1/ServiceAccount': { model: ServiceAccount, type: ['kubernetes-models/v1/ServiceAccount', 'IServiceAccount'] },
  'apps/v1/Deployment': { model: Deployment, type: ['kubernetes-models/apps/v1/Deployment', 'IDeployment'] },
  'apps/v1/DaemonSet': { model: DaemonSet, type: ['kubernetes-models/apps/v1/DaemonSet', 'IDaemonSet'] },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, type: ['kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'] },
  'policy/v1/PodDisruptionBudget': { model: PodDisruptionBudget, type: ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'] },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    model: ServiceMonitor,
    type: ['@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', 'IServiceMonitor'],
  },
};

const label = (o: K8sObject) => `${o.kind} ${o.metadata?.name}`;

/** Problems the kubernetes-models validators find, one line each (none: all valid). */
export function schemaProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const o of objects) {
    const kind = KINDS[`${o.apiVersion}/${o.kind}`];
    if (!kind) {
      problems.push(`${label(o)}: no schema for ${o.apiVersion} ${o.kind} in this check`);
      continue;
    }
    try {
      new kind.model(o as never).validate();
    } catch (err) {
      problems.push(`${label(o)}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/**
 * Fields the Kubernetes types do not have, found by type-checking each object as a literal of
 * its declared type (TypeScript reports every property a fresh object literal adds).
 */
export function unknownFieldProblems(objects: K8sObject[]): string[] {
  const lines: string[] = [];
  const owner: string[] = []; // the object each line of the generated source belongs to
  const imports = new Map<string, string>();
  objects.forEach((o) => {
    const kind = KINDS[`${o.apiVersion}/${o.kind}`];
    if (kind) imports.set(kind.type[1], kind.type[0]);
  });
  for (const [name, module] of imports) {
    lines.push(`import type { ${name} } from '${module}';`);
    owner.push('');
  }
  objects.forEach((o, i) => {
    const kind = KINDS[`${o.apiVersion}/${o.kind}`];
    if (!kind) return;
    const body = `export const o${i}: ${kind.type[1]} = ${JSON.stringify(o, null, 2)};`.split('\n');
    lines.push(...body);
    owner.push(...body.map(() => label(o)));
  });
  // A file that is never written: the compiler host hands its text over; it sits in the
  // repository so that the type declarations resolve from node_modules.
  const file = resolve('deploy-manifest-check.ts');
  const options: ts.CompilerOptions = {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    name === file ? ts.createSourceFile(name, lines.join('\n'), language) : getSourceFile(name, language, ...rest);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file?.fileName === file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1;
    const where = owner[line] ?? d.file?.fileName ?? '';
    const text = line >= 0 ? ` (at: ${lines[line]!.trim()})` : '';
    return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ').slice(0, 300)}${text}`;
  });
}
