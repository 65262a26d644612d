import picomatch from 'picomatch';
import type { HarborArtifact } from '@harbor-api/client';
import type { HarborFilter, HarborTrigger } from '../core/store/group-store.js';
import { badRequest } from './errors.js';

// A replication rule's filters, as Harbor applies them (src/pkg/reg/filter): every filter
// must hold. "name" matches the repository's full name ("library/nginx"), "tag" any of the
// artifact's tags, "label" requires every listed label, "resource" the artifact type; "tag"
// and "label" may be decorated "excludes". Patterns are doublestar globs: `*` stays within a
// path component, `**` crosses them, `{a,b}` and `?` as usual.

const GLOB = /[*?[\]{}]/;

export function harborMatch(pattern: string, value: string): boolean {
  if (pattern === '') return true;
  return picomatch.isMatch(value, pattern, { dot: true, strictSlashes: true });
}

const matchesDecorated = (f: HarborFilter, match: boolean) => (f.decoration === 'excludes' ? !match : match);

/** Whether the rule selects this repository at all (its name filters). */
export function selectsRepository(filters: readonly HarborFilter[], repository: string): boolean {
  return filters.filter((f) => f.type === 'name').every((f) => harborMatch(String(f.value ?? ''), repository));
}

/** Whether the rule selects this artifact of a selected repository (tag, label, resource filters). */
export function selectsArtifact(filters: readonly HarborFilter[], a: HarborArtifact): boolean {
  const tags = (a.tags ?? []).flatMap((t) => (t.name ? [t.name] : []));
  const labels = new Set((a.labels ?? []).flatMap((l) => (l.name ? [l.name] : [])));
  return filters.every((f) => {
    if (f.type === 'tag') {
      const pattern = String(f.value ?? '');
      if (pattern === '') return true;
      // An untagged artifact is matched against the empty tag, as Harbor does.
      const candidates = tags.length ? tags : [''];
      return f.decoration === 'excludes'
        ? candidates.some((t) => !harborMatch(pattern, t))
        : candidates.some((t) => harborMatch(pattern, t) || (t === '' && /^\*+$/.test(pattern)));
    }
    if (f.type === 'label') {
      const wanted = Array.isArray(f.value) ? (f.value as string[]) : [];
      if (wanted.length === 0) return true;
      return matchesDecorated(f, wanted.every((l) => labels.has(l)));
    }
    if (f.type === 'resource') return f.value === 'image' ? (a.type ?? '').toUpperCase() === 'IMAGE' : true;
    return true;
  });
}

/** The projects a rule's name filters can select from, among `projects` (all when no name filter). */
export function sourceProjects(filters: readonly HarborFilter[], projects: readonly string[]): string[] {
  const patterns = filters.filter((f) => f.type === 'name' && String(f.value ?? '') !== '').map((f) => String(f.value));
  if (patterns.length === 0) return [...projects].sort();
  return projects.filter((p) => patterns.every((pattern) => {
    const first = pattern.split('/')[0]!;
    // "**" as the first component may span the project and more.
    return first.includes('**') || harborMatch(first, p);
  })).sort();
}

/** Literal projects named by the name filters (no glob in the first component). */
export function literalProjects(filters: readonly HarborFilter[]): string[] | undefined {
  const firsts = filters.filter((f) => f.type === 'name' && String(f.value ?? '') !== '').map((f) => String(f.value).split('/')[0]!);
  if (firsts.length === 0 || firsts.some((x) => GLOB.test(x))) return undefined;
  return [...new Set(firsts)].sort();
}

const FILTER_TYPES = ['name', 'tag', 'label', 'resource'];

/** Checks filters given to the admin API, naming the field at fault. */
export function checkFilters(filters: readonly HarborFilter[], field = 'filters'): HarborFilter[] {
  return filters.map((f, i) => {
    const at = `${field}[${i}]`;
    if (!FILTER_TYPES.includes(f.type)) throw badRequest(`${at}.type`, `must be one of ${FILTER_TYPES.join(', ')}`);
    if (f.type === 'label') {
      if (!Array.isArray(f.value) || !f.value.every((v) => typeof v === 'string' && v !== '')) throw badRequest(`${at}.value`, 'a label filter takes an array of label names');
    } else if (typeof f.value !== 'string' || f.value === '') {
      throw badRequest(`${at}.value`, `a ${f.type} filter takes a non-empty string`);
    }
    if (f.type === 'resource' && !['image', 'artifact'].includes(f.value as string)) throw badRequest(`${at}.value`, 'must be image or artifact');
    if (f.decoration !== undefined && !['matches', 'excludes'].includes(f.decoration)) throw badRequest(`${at}.decoration`, 'must be matches or excludes');
    if (f.decoration === 'excludes' && (f.type === 'name' || f.type === 'resource')) throw badRequest(`${at}.decoration`, `Harbor does not exclude by ${f.type}`);
    if (f.type === 'name' || f.type === 'tag') {
      try {
        picomatch.makeRe(f.value as string);
      } catch (err) {
        throw badRequest(`${at}.value`, `not a valid pattern: ${(err as Error).message}`);
      }
    }
    return { type: f.type, value: f.value, ...(f.decoration ? { decoration: f.decoration } : {}) };
  });
}

// Harbor's cron has six fields (seconds first), as its scheduled trigger takes it.
const CRON = /^(\S+\s+){5}\S+$/;

export function checkTrigger(trigger: HarborTrigger, field = 'trigger'): HarborTrigger {
  if (trigger.type === 'scheduled') {
    const cron = trigger.trigger_settings?.cron;
    if (!cron || !CRON.test(cron.trim())) throw badRequest(`${field}.trigger_settings.cron`, 'a scheduled trigger needs a six-field cron, e.g. "0 0 * * * *"');
    return { type: 'scheduled', trigger_settings: { cron: cron.trim() } };
  }
  return { type: trigger.type };
}
