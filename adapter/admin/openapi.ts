// The admin API's OpenAPI 3 document: served at /api/v1/openapi.json, and the source of the
// request validation (express-openapi-validator), so what is documented is what is checked.
// It also describes the two routes Harbor Satellite's satellites call (/satellites/ztr,
// /satellites/sync), which live outside /api/v1 because those satellites call them there.

import { dashboardPaths, dashboardSchemas } from './dashboard-openapi.js';
import { ADMIN, error, json, NAME, nameParam, ok, ref, SATELLITE } from './openapi-parts.js';

const body = (schema: unknown) => ({ required: true, content: json(schema) });

const COMMON = {
  400: error('bad input; `field` names what is wrong'), 401: error('no or wrong credential'),
  429: error('too many failed logins from this address'), 503: error('the database or Harbor cannot be reached, or is not configured'),
};
// Harbor's own refusals are passed on with their status and message.
const HARBOR = {
  404: error('not found, or Harbor\'s own 404 passed on'), 409: error('conflict, or Harbor\'s own 409 passed on'),
  412: error('Harbor\'s own 412 passed on'), 502: error('Harbor failed or could not be reached'), 503: error('Harbor or a key is not configured'),
};

const schemas = {
  Error: {
    type: 'object', required: ['errors'], additionalProperties: false,
    properties: {
      errors: {
        type: 'array', minItems: 1,
        items: {
          type: 'object', required: ['code', 'message'], additionalProperties: false,
          properties: {
            code: { type: 'string', description: 'BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, FLATTENING, TOO_MANY_REQUESTS, HARBOR_ERROR, UNAVAILABLE …' },
            message: { type: 'string' },
            field: { type: 'string', description: 'the input field at fault, e.g. filters[0].type' },
          },
        },
      },
    },
  },
  Filter: {
    type: 'object', required: ['type', 'value'], additionalProperties: false,
    description: 'A Harbor replication filter. name: repository pattern ("library/**"); tag: tag pattern; label: label names (all required); resource: image or artifact.',
    properties: {
      type: { type: 'string', enum: ['name', 'tag', 'label', 'resource'] },
      value: { oneOf: [{ type: 'string', minLength: 1, maxLength: 1024 }, { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } }] },
      decoration: { type: 'string', enum: ['matches', 'excludes'] },
    },
  },
  Trigger: {
    type: 'object', required: ['type'], additionalProperties: false,
    properties: {
      type: { type: 'string', enum: ['manual', 'event_based', 'scheduled'] },
      trigger_settings: { type: 'object', additionalProperties: false, properties: { cron: { type: 'string', description: 'six fields, seconds first' } } },
    },
  },
  GroupCreate: {
    type: 'object', required: ['name', 'filters'], additionalProperties: false,
    properties: {
      name: { type: 'string', pattern: NAME, maxLength: 63 },
      filters: { type: 'array', maxItems: 20, items: ref('Filter') },
      trigger: ref('Trigger'),
      replicate: { type: 'boolean', description: 'start a manual execution right away' },
    },
  },
  GroupPatch: {
    type: 'object', minProperties: 1, additionalProperties: false,
    properties: { filters: { type: 'array', maxItems: 20, items: ref('Filter') }, trigger: ref('Trigger') },
  },
  GroupAdopt: {
    type: 'object', required: ['policy'], additionalProperties: false,
    properties: {
      policy: { type: 'string', minLength: 1, maxLength: 256, description: 'the rule\'s id or name' },
      fix: { type: 'boolean', description: 'set "No Flattening" on a rule that flattens the path' },
      replace: { type: 'boolean', description: 'let the rule replace the one the group already has (refused otherwise)' },
    },
  },
  Execution: {
    type: 'object', additionalProperties: false, nullable: true,
    required: ['id', 'status', 'trigger', 'startTime', 'endTime', 'total', 'succeed', 'failed'],
    properties: {
      id: { type: 'integer' }, status: { type: 'string' }, trigger: { type: 'string' },
      startTime: { type: 'string', nullable: true }, endTime: { type: 'string', nullable: true },
      total: { type: 'integer' }, succeed: { type: 'integer' }, failed: { type: 'integer' },
    },
  },
  Group: {
    type: 'object', additionalProperties: false,
    required: ['name', 'policyId', 'adopted', 'filters', 'trigger', 'projects', 'satellites', 'state', 'lastExecution', 'createdAt', 'updatedAt'],
    properties: {
      name: { type: 'string' },
      policyId: { type: 'integer', nullable: true, description: 'the Harbor replication rule' },
      adopted: { type: 'boolean', description: 'a rule made by hand and adopted' },
      filters: { type: 'array', items: ref('Filter') },
      trigger: ref('Trigger'),
      projects: { type: 'array', items: { type: 'string' }, description: 'source projects whose webhooks report here' },
      satellites: { type: 'integer' },
      state: {
        type: 'object', nullable: true, additionalProperties: false, required: ['version', 'digest', 'publishedAt'],
        properties: { version: { type: 'integer' }, digest: { type: 'string', nullable: true }, publishedAt: { type: 'string', nullable: true } },
      },
      lastExecution: ref('Execution'),
      harborError: { type: 'string' },
      createdAt: { type: 'string', format: 'date-time' },
      updatedAt: { type: 'string', format: 'date-time' },
    },
  },
  GroupCreated: {
    type: 'object', required: ['created', 'group'], additionalProperties: false,
    properties: { created: { type: 'boolean' }, group: ref('Group'), executionId: { type: 'integer' } },
  },
  Adopted: {
    type: 'object', required: ['group', 'fixed', 'warnings'], additionalProperties: false,
    properties: { group: ref('Group'), fixed: { type: 'boolean' }, warnings: { type: 'array', items: { type: 'string' } } },
  },
  Reconciled: {
    type: 'object', required: ['group', 'tombstoned', 'updated', 'checked'], additionalProperties: false,
    properties: {
      group: { type: 'string' }, tombstoned: { type: 'array', items: { type: 'string' } }, updated: { type: 'integer' }, checked: { type: 'integer' },
      robots: { type: 'object', additionalProperties: { type: 'string' } },
    },
  },
  SatelliteCreate: {
    type: 'object', required: ['name', 'groups'], additionalProperties: false,
    properties: {
      name: { type: 'string', pattern: SATELLITE, maxLength: 63 },
      groups: { type: 'array', minItems: 1, maxItems: 100, items: { type: 'string', pattern: NAME, maxLength: 63 } },
      expiresInHours: { type: 'integer', minimum: 1, maximum: 8760, description: 'validity of the token (default REGISTRATION_TOKEN_HOURS)' },
    },
  },
  SatellitePatch: {
    type: 'object', required: ['groups'], additionalProperties: false,
    properties: { groups: { type: 'array', minItems: 1, maxItems: 100, items: { type: 'string', pattern: NAME, maxLength: 63 } } },
  },
  TokenRequest: {
    type: 'object', additionalProperties: false,
    properties: { expiresInHours: { type: 'integer', minimum: 1, maximum: 8760 } },
  },
  IssuedToken: {
    type: 'object', required: ['name', 'token', 'expiresAt'], additionalProperties: false,
    properties: {
      name: { type: 'string' },
      token: { type: 'string', description: 'one-time registration token; shown once' },
      expiresAt: { type: 'string', format: 'date-time' },
    },
  },
  RegisterRequest: {
    type: 'object', required: ['token'], additionalProperties: false,
    properties: { token: { type: 'string', minLength: 1, maxLength: 256 } },
  },
  Registration: {
    type: 'object', additionalProperties: false,
    required: ['name', 'registry', 'username', 'password', 'publicKey', 'groups', 'statusUrl'],
    properties: {
      name: { type: 'string' },
      registry: { type: 'string', description: 'Harbor\'s registry URL' },
      username: { type: 'string', description: 'the robot account' },
      password: { type: 'string', description: 'its secret; shown once' },
      publicKey: { type: 'string', description: 'PEM of the key states are signed with' },
      groups: {
        type: 'array',
        items: {
          type: 'object', required: ['name', 'state', 'identity'], additionalProperties: false,
          properties: { name: { type: 'string' }, state: { type: 'string' }, identity: { type: 'string', description: 'host/repository the state\'s signatures name (the agent\'s groups[].identity)' } },
        },
      },
      statusUrl: { type: 'string', nullable: true },
    },
  },
  StatusReport: {
    type: 'object', required: ['agentVersion', 'syncedAt', 'groups'], additionalProperties: false,
    properties: {
      agentVersion: { type: 'string', maxLength: 64 },
      syncedAt: { type: 'string', format: 'date-time' },
      groups: {
        type: 'array', maxItems: 100,
        items: {
          type: 'object', required: ['name', 'version', 'digest', 'images'], additionalProperties: false,
          properties: {
            name: { type: 'string', pattern: NAME },
            version: { type: 'integer', minimum: 1, nullable: true },
            digest: { type: 'string', nullable: true, pattern: '^sha256:[a-f0-9]{64}$' },
            appliedAt: { type: 'string', format: 'date-time', nullable: true },
            checkedAt: { type: 'string', format: 'date-time', nullable: true },
            images: {
              type: 'object', required: ['present', 'pending', 'failed'], additionalProperties: false,
              properties: { present: { type: 'integer', minimum: 0 }, pending: { type: 'integer', minimum: 0 }, failed: { type: 'integer', minimum: 0 } },
            },
            failures: {
              type: 'array', maxItems: 1000,
              items: {
                type: 'object', required: ['repository', 'digest', 'reason'], additionalProperties: false,
                properties: { repository: { type: 'string' }, digest: { type: 'string' }, reason: { type: 'string', maxLength: 2000 } },
              },
            },
          },
        },
      },
    },
  },
  Drift: {
    type: 'object', additionalProperties: false,
    required: ['group', 'latestVersion', 'appliedVersion', 'behind', 'failedImages', 'status', 'summary'],
    properties: {
      group: { type: 'string' }, latestVersion: { type: 'integer', nullable: true }, appliedVersion: { type: 'integer', nullable: true },
      behind: { type: 'integer', nullable: true }, failedImages: { type: 'integer' },
      status: { type: 'string', enum: ['up to date', 'behind', 'failing', 'nothing applied', 'not reported', 'no state yet'] },
      summary: { type: 'string' },
    },
  },
  Satellite: {
    type: 'object', additionalProperties: false,
    required: ['name', 'groups', 'status', 'robot', 'createdAt', 'registeredAt', 'revokedAt', 'lastSeen', 'lastSynced', 'agentVersion', 'imageCount', 'drift'],
    properties: {
      name: { type: 'string' },
      groups: { type: 'array', items: { type: 'string' } },
      status: { type: 'string', enum: ['up to date', 'behind', 'failing', 'never reported', 'not registered', 'revoked', 'reporting'] },
      robot: {
        type: 'object', nullable: true, additionalProperties: false, required: ['name', 'projects'],
        properties: { name: { type: 'string' }, projects: { type: 'array', items: { type: 'string' } } },
      },
      createdAt: { type: 'string', format: 'date-time' },
      registeredAt: { type: 'string', nullable: true },
      revokedAt: { type: 'string', nullable: true },
      lastSeen: { type: 'string', nullable: true },
      lastSynced: { type: 'string', nullable: true, description: 'when the agent says its last sync ended' },
      agentVersion: { type: 'string', nullable: true },
      imageCount: { type: 'integer', nullable: true },
      drift: { type: 'array', items: ref('Drift') },
    },
  },
  HarborNotification: {
    type: 'object', required: ['type'],
    description: 'Harbor\'s webhook payload ("Default" format): {type, occur_at, operator, event_data}',
    properties: {
      type: { type: 'string', maxLength: 64 },
      occur_at: { type: 'integer' },
      operator: { type: 'string' },
      event_data: { type: 'object' },
    },
  },
  NotificationOutcome: {
    type: 'object', required: ['event', 'groups'], additionalProperties: false,
    properties: { event: { type: 'string' }, groups: { type: 'array', items: { type: 'string' } } },
  },
  ZeroTouchAnswer: {
    type: 'object', required: ['auth', 'state'], additionalProperties: false,
    properties: {
      auth: {
        type: 'object', required: ['url', 'username', 'password'], additionalProperties: false,
        properties: { url: { type: 'string' }, username: { type: 'string' }, password: { type: 'string' } },
      },
      state: { type: 'string' },
    },
  },
  Heartbeat: {
    type: 'object', required: ['name'],
    description: 'A Harbor Satellite status report; fields beyond these are kept as sent',
    properties: {
      name: { type: 'string', pattern: SATELLITE, maxLength: 63 },
      activity: { type: 'string' },
      state_report_interval: { type: 'string' },
      latest_state_digest: { type: 'string' },
      latest_config_digest: { type: 'string' },
      image_count: { type: 'integer', minimum: 0 },
      cached_images: { type: 'array', items: { type: 'object', properties: { reference: { type: 'string' }, size_bytes: { type: 'integer' } } } },
    },
  },
};

export function adminApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.0.3',
    info: {
      title: 'Satellite for Harbor admin API',
      version: '1.0.0',
      description: 'Groups (Harbor replication rules), satellites (robot accounts, registration, fleet view) and Harbor webhooks. One error format: {"errors":[{"code","message","field"}]}.',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        adminBasic: { type: 'http', scheme: 'basic', description: 'ADMIN_USERNAME / ADMIN_PASSWORD' },
        robotBasic: { type: 'http', scheme: 'basic', description: 'the satellite\'s Harbor robot name and secret' },
        webhookSecret: { type: 'apiKey', in: 'header', name: 'Authorization', description: 'the auth header set on the webhook policy' },
      },
      schemas: { ...schemas, ...dashboardSchemas },
    },
    paths: {
      '/api/v1/openapi.json': { get: { operationId: 'getOpenApi', summary: 'This document', security: [], responses: { 200: ok('the document', { type: 'object' }) } } },
      '/api/v1/groups': {
        get: { operationId: 'listGroups', summary: 'Groups with their rule, last execution, state and satellites', security: ADMIN, responses: { 200: ok('groups', { type: 'array', items: ref('Group') }), ...COMMON } },
        post: {
          operationId: 'createGroup', summary: 'Create a group in Harbor (endpoint, state project, rule, webhooks); idempotent', security: ADMIN, requestBody: body(ref('GroupCreate')),
          responses: { ...HARBOR, 200: ok('it existed as asked', ref('GroupCreated')), 201: ok('created', ref('GroupCreated')), ...COMMON, 409: error('exists with other settings, or Harbor conflict') },
        },
      },
      '/api/v1/groups/adopt': {
        post: {
          operationId: 'adoptGroup', summary: 'Take over a hand-made replication rule (refused if it flattens, unless fix)', security: ADMIN, requestBody: body(ref('GroupAdopt')),
          responses: { ...HARBOR, 200: ok('adopted', ref('Adopted')), ...COMMON, 404: error('no such rule'), 409: error('FLATTENING: the rule flattens the path; CONFLICT: the group already has another rule, or the rule is another group\'s') },
        },
      },
      '/api/v1/groups/{name}': {
        parameters: [nameParam('group', NAME)],
        get: { operationId: 'getGroup', security: ADMIN, responses: { 200: ok('the group', ref('Group')), ...COMMON, 404: error('no such group') } },
        patch: {
          operationId: 'updateGroup', summary: 'Change filters or trigger', security: ADMIN, requestBody: body(ref('GroupPatch')),
          responses: { ...HARBOR, 200: ok('the group', ref('Group')), ...COMMON, 404: error('no such group') },
        },
        delete: {
          operationId: 'deleteGroup', summary: 'Remove the rule; tombstone the whole list', security: ADMIN,
          responses: { ...HARBOR, 200: ok('deleted', { type: 'object', required: ['tombstoned'], additionalProperties: false, properties: { tombstoned: { type: 'integer' } } }), ...COMMON, 404: error('no such group') },
        },
      },
      '/api/v1/groups/{name}/replicate': {
        parameters: [nameParam('group', NAME)],
        post: {
          operationId: 'replicateGroup', summary: 'A manual execution of the rule now', security: ADMIN,
          responses: { ...HARBOR, 202: ok('started', { type: 'object', required: ['executionId'], additionalProperties: false, properties: { executionId: { type: 'integer' } } }), ...COMMON, 404: error('no such group') },
        },
      },
      '/api/v1/groups/{name}/reconcile': {
        parameters: [nameParam('group', NAME)],
        post: {
          operationId: 'reconcileGroup', summary: 'Compare the list with what the rule selects in Harbor now; tombstone the rest, fill labels and platforms', security: ADMIN,
          responses: { ...HARBOR, 200: ok('reconciled', ref('Reconciled')), ...COMMON, 404: error('no such group') },
        },
      },
      '/api/v1/satellites': {
        get: {
          operationId: 'listSatellites', summary: 'The fleet: groups, drift, last seen', security: ADMIN,
          parameters: [{ name: 'group', in: 'query', required: false, description: 'only the satellites of this group', schema: { type: 'string', pattern: NAME, maxLength: 63 } }],
          responses: { 200: ok('satellites', { type: 'array', items: ref('Satellite') }), ...COMMON } },
        post: {
          operationId: 'createSatellite', summary: 'A satellite and its one-time registration token', security: ADMIN, requestBody: body(ref('SatelliteCreate')),
          responses: { 201: ok('created; the token is shown once', ref('IssuedToken')), ...COMMON, 409: error('exists') },
        },
      },
      '/api/v1/satellites/register': {
        post: {
          operationId: 'registerSatellite', summary: 'Use a registration token (once): the robot credential and what the agent needs', security: [], requestBody: body(ref('RegisterRequest')),
          responses: { ...HARBOR, 200: ok('registered; the password is shown once', ref('Registration')), 400: COMMON[400], 401: error('unknown, used, expired or revoked token'), 429: error('too many attempts') },
        },
      },
      '/api/v1/satellites/{name}': {
        parameters: [nameParam('satellite', SATELLITE)],
        get: { operationId: 'getSatellite', security: ADMIN, responses: { 200: ok('the satellite', ref('Satellite')), ...COMMON, 404: error('no such satellite') } },
        patch: {
          operationId: 'updateSatellite', summary: 'Change its groups; its robot follows', security: ADMIN, requestBody: body(ref('SatellitePatch')),
          responses: { ...HARBOR, 200: ok('the satellite', ref('Satellite')), ...COMMON, 404: error('no such satellite') },
        },
        delete: {
          operationId: 'revokeSatellite', summary: 'Revoke: robot deleted in Harbor, tokens refused', security: ADMIN,
          responses: { ...HARBOR, 204: { description: 'revoked' }, ...COMMON, 404: error('no such satellite') },
        },
      },
      '/api/v1/satellites/{name}/token': {
        parameters: [nameParam('satellite', SATELLITE)],
        post: {
          operationId: 'issueToken', summary: 'A new registration token (earlier unused ones stop working)', security: ADMIN,
          requestBody: { required: false, content: json(ref('TokenRequest')) },
          responses: { 201: ok('the token, shown once', ref('IssuedToken')), ...COMMON, 404: error('no such satellite') },
        },
      },
      '/api/v1/satellites/{name}/rotate': {
        parameters: [nameParam('satellite', SATELLITE)],
        post: {
          operationId: 'rotateSatellite', summary: 'A new robot secret (the old one stops working)', security: ADMIN,
          responses: { ...HARBOR, 200: ok('the new credential, shown once', ref('Registration')), ...COMMON, 404: error('no such satellite'), 409: error('not registered') },
        },
      },
      '/api/v1/satellites/{name}/status': {
        parameters: [nameParam('satellite', SATELLITE)],
        post: {
          operationId: 'reportStatus', summary: 'What the satellite runs (its agent reports)', security: [{ robotBasic: [] }], requestBody: body(ref('StatusReport')),
          responses: { 204: { description: 'recorded' }, ...COMMON, 403: error('another satellite\'s credential') },
        },
      },
      '/api/v1/webhooks/harbor': {
        post: {
          operationId: 'harborWebhook', summary: 'Harbor\'s notifications (REPLICATION, DELETE_ARTIFACT)', security: [{ webhookSecret: [] }], requestBody: body(ref('HarborNotification')),
          responses: { 200: ok('acted upon (queued)', ref('NotificationOutcome')), ...COMMON },
        },
      },
      '/satellites/ztr/{token}': {
        get: {
          operationId: 'zeroTouchRegistration', summary: 'Harbor Satellite zero-touch registration (STATE_LAYOUT=harbor-satellite)', security: [],
          parameters: [{ name: 'token', in: 'path', required: true, schema: { type: 'string', minLength: 1, maxLength: 256 } }],
          responses: { ...HARBOR, 200: ok('registered', ref('ZeroTouchAnswer')), 401: error('unknown, used, expired or revoked token'), 429: error('too many attempts') },
        },
      },
      '/satellites/sync': {
        post: {
          operationId: 'harborSatelliteSync', summary: 'Harbor Satellite heartbeat (STATE_LAYOUT=harbor-satellite)', security: [{ robotBasic: [] }], requestBody: body(ref('Heartbeat')),
          responses: { 200: { description: 'recorded' }, ...COMMON, 403: error('another satellite\'s credential') },
        },
      },
      ...dashboardPaths,
    },
  };
}
