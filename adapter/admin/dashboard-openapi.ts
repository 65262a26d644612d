// The part of the admin API's OpenAPI document the fleet dashboard added: the fleet
// overview, a group's versions and the diff between two of them, a satellite's report.
// Merged into adminApiDocument() (openapi.ts), so its requests are validated like the rest.

import { ADMIN, error, json, NAME, nameParam, ok, ref, SATELLITE } from './openapi-parts.js';

const COMMON = {
  400: error('bad input; `field` names what is wrong'), 401: error('no or wrong credential'),
  429: error('too many failed logins from this address'), 503: error('the database or the state registry cannot be reached'),
};
const count = { type: 'integer', minimum: 0 };
const time = { type: 'string', format: 'date-time' };
const nullableTime = { type: 'string', nullable: true };
const entry = { type: 'object', required: ['repository', 'digest', 'tag'], additionalProperties: false, properties: { repository: { type: 'string' }, digest: { type: 'string' }, tag: { type: 'array', items: { type: 'string' } } } };

export const dashboardSchemas = {
  GroupOverview: {
    type: 'object', additionalProperties: false,
    required: ['name', 'latest', 'satellites', 'onLatest', 'behind', 'failing', 'silent', 'neverReported', 'notRegistered', 'pending'],
    properties: {
      name: { type: 'string' },
      latest: { type: 'object', nullable: true, additionalProperties: false, required: ['version', 'publishedAt'], properties: { version: { type: 'integer' }, publishedAt: nullableTime } },
      satellites: { ...count, description: 'satellites of the group, revoked ones left out' },
      onLatest: count,
      behind: {
        type: 'object', required: ['total', 'byVersions'], additionalProperties: false,
        properties: { total: count, byVersions: { type: 'object', additionalProperties: count, description: 'versions behind → satellites' } },
      },
      failing: count,
      silent: { ...count, description: 'reported once, not seen for silentAfterSeconds' },
      neverReported: count,
      notRegistered: count,
      pending: { ...count, description: 'reporting, nothing of this group applied yet' },
    },
  },
  FleetOverview: {
    type: 'object', additionalProperties: false, required: ['generatedAt', 'silentAfterSeconds', 'totals', 'groups', 'convergence', 'history'],
    properties: {
      generatedAt: time,
      silentAfterSeconds: { type: 'integer' },
      totals: {
        type: 'object', additionalProperties: false, required: ['groups', 'satellites', 'onLatest', 'behind', 'failing', 'silent'],
        properties: { groups: count, satellites: count, onLatest: count, behind: count, failing: count, silent: count },
      },
      groups: { type: 'array', items: ref('GroupOverview') },
      history: {
        type: 'object', additionalProperties: false, required: ['since', 'points'],
        description: 'over the last 7 days: the share of (satellite, group) pairs on their group\'s latest version; it drops at each publish',
        properties: {
          since: time,
          points: {
            type: 'array', maxItems: 400,
            items: { type: 'object', required: ['at', 'share'], additionalProperties: false, properties: { at: time, share: { type: 'number', minimum: 0, maximum: 1 } } },
          },
        },
      },
      convergence: {
        type: 'object', additionalProperties: false, required: ['pairs', 'points'],
        description: 'after each group\'s latest publish: the share of (satellite, group) pairs running it, by seconds since that publish',
        properties: {
          pairs: count,
          points: {
            type: 'array',
            items: { type: 'object', required: ['seconds', 'share'], additionalProperties: false, properties: { seconds: { type: 'number', minimum: 0 }, share: { type: 'number', minimum: 0, maximum: 1 } } },
          },
        },
      },
    },
  },
  Version: {
    type: 'object', additionalProperties: false, required: ['version', 'digest', 'createdAt', 'publishedAt', 'images', 'bytes', 'pruned'],
    properties: {
      version: { type: 'integer' }, digest: { type: 'string', nullable: true }, createdAt: time, publishedAt: nullableTime,
      images: { ...count, description: 'images (manifests and indexes) the state lists' },
      bytes: { type: 'integer', minimum: 0, nullable: true, description: 'the state artifact\'s size in bytes, manifest and blobs (null: published before sizes were kept)' },
      pruned: { type: 'boolean', description: 'removed from the registry (older than the versions kept)' },
    },
  },
  VersionDiff: {
    type: 'object', additionalProperties: false, required: ['group', 'from', 'to', 'added', 'removed', 'retagged'],
    description: 'as `satellite state diff --json` prints it',
    properties: {
      group: { type: 'string' }, from: { type: 'integer' }, to: { type: 'integer' },
      added: { type: 'array', items: entry },
      removed: { type: 'array', items: entry },
      retagged: {
        type: 'array',
        items: {
          type: 'object', required: ['repository', 'digest', 'from', 'to'], additionalProperties: false,
          properties: { repository: { type: 'string' }, digest: { type: 'string' }, from: { type: 'array', items: { type: 'string' } }, to: { type: 'array', items: { type: 'string' } } },
        },
      },
    },
  },
  SatelliteReport: {
    type: 'object', additionalProperties: false, required: ['name', 'lastSeen', 'reportedAt', 'report', 'token'],
    properties: {
      name: { type: 'string' }, lastSeen: nullableTime, reportedAt: nullableTime,
      report: { type: 'object', nullable: true, description: 'the last StatusReport (or Harbor Satellite heartbeat) as sent' },
      token: {
        type: 'object', nullable: true, additionalProperties: false, required: ['status', 'issuedAt', 'expiresAt', 'usedAt'],
        description: 'its newest registration token (never the token itself)',
        properties: { status: { type: 'string', enum: ['unused', 'used', 'expired', 'revoked'] }, issuedAt: time, expiresAt: time, usedAt: nullableTime },
      },
    },
  },
};

const versionParam = (name: 'from' | 'to') => ({ name, in: 'query', required: true, description: `the version to compare ${name}`, schema: { type: 'integer', minimum: 1 } });

export const dashboardPaths = {
  '/api/v1/fleet': {
    get: {
      operationId: 'fleetOverview', summary: 'Per group: latest version, satellites on it, behind, failing, silent; convergence after the latest publish', security: ADMIN,
      parameters: [{ name: 'silentAfterSeconds', in: 'query', required: false, description: 'unseen this long: silent (default 600)', schema: { type: 'integer', minimum: 1, maximum: 31_536_000 } }],
      responses: { 200: ok('the overview', ref('FleetOverview')), ...COMMON },
    },
  },
  '/api/v1/groups/{name}/versions': {
    parameters: [nameParam('group', NAME)],
    get: {
      operationId: 'listVersions', summary: 'The group\'s published versions, newest first', security: ADMIN,
      responses: { 200: ok('versions', { type: 'array', items: ref('Version') }), ...COMMON, 404: error('no such group') },
    },
  },
  '/api/v1/groups/{name}/diff': {
    parameters: [nameParam('group', NAME)],
    get: {
      operationId: 'diffVersions', summary: 'What was added, removed and retagged from one published version to another (`satellite state diff`)', security: ADMIN,
      parameters: [versionParam('from'), versionParam('to')],
      responses: { 200: ok('the difference', ref('VersionDiff')), ...COMMON, 404: error('no such group') },
    },
  },
  '/api/v1/satellites/{name}/report': {
    parameters: [nameParam('satellite', SATELLITE)],
    get: {
      operationId: 'getSatelliteReport', summary: 'What the satellite last reported (images present, pending, failed with reasons)', security: ADMIN,
      responses: { 200: ok('the report', ref('SatelliteReport')), ...COMMON, 404: error('no such satellite') },
    },
  },
};
