// The small pieces both parts of the admin API's OpenAPI document are written with
// (openapi.ts and dashboard-openapi.ts): name patterns, $refs, JSON bodies and answers.

/** A group's name: an OCI repository path component. */
export const NAME = '^[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*$';
/** A satellite's name. */
export const SATELLITE = '^[a-z0-9]+(?:[._-][a-z0-9]+)*$';

export const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
export const json = (schema: unknown) => ({ 'application/json': { schema } });
export const error = (description: string) => ({ description, content: json(ref('Error')) });
export const ok = (description: string, schema: unknown) => ({ description, content: json(schema) });
export const nameParam = (what: string, pattern: string) => ({ name: 'name', in: 'path', required: true, description: `the ${what}'s name`, schema: { type: 'string', pattern, maxLength: 63 } });
export const ADMIN = [{ adminBasic: [] }];
