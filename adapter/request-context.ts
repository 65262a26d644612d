import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type { Logger } from '../core/logger.js';

declare module 'express-serve-static-core' {
  interface Request {
    log: Logger;
    id: string;
  }
}

const INCOMING_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * The level of a request's log line: at `info` an operator sees every write, every refusal
 * (a failed login, a denied or throttled client, bad input) and every failure, but not the
 * traffic of a healthy replication — the blob HEADs (several per image), manifest
 * existence checks answered 404, reads, and the credential-less ping that gets the 401
 * challenge. Those are `debug`. (A line per blob HEAD was about a tenth of the endpoint's
 * CPU.)
 */
export function requestLogLevel(method: string, status: number, hadCredentials: boolean): 'warn' | 'info' | 'debug' {
  if (status >= 500) return 'warn';
  if (method !== 'GET' && method !== 'HEAD') return 'info';
  if (status === 404 || (status === 401 && !hadCredentials)) return 'debug';
  return status >= 400 ? 'info' : 'debug';
}

const BASE = Symbol('request log base');
const CHILD = Symbol('request log');
type WithLog = Request & { [BASE]: Logger; [CHILD]?: Logger };

/**
 * `req.log` is made on first use: a pino child logger per request (its bindings serialized,
 * redaction set up again) was about a twentieth of what the endpoint allocated per image
 * (bench/endpoint.ts profile), yet at `info` a healthy blob HEAD never logs. The getter sits
 * on the request prototype express gives every request of an app, so a request allocates
 * nothing for it until it logs.
 */
function installLazyLog(proto: object): void {
  if (Object.prototype.hasOwnProperty.call(proto, CHILD)) return;
  Object.defineProperty(proto, CHILD, { value: undefined, writable: true });
  Object.defineProperty(proto, 'log', {
    configurable: true,
    get(this: WithLog): Logger {
      return (this[CHILD] ??= this[BASE].child({ requestId: this.id }));
    },
    set(this: WithLog, value: Logger) {
      this[CHILD] = value;
    },
  });
}

/**
 * Gives every request an id (the caller's X-Request-Id when it is sane) and a logger
 * carrying it (`req.log`, made when first used), and logs one line when the answer is
 * finished (see requestLogLevel).
 */
export function requestContext(log: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const incoming = req.headers['x-request-id'];
    req.id = typeof incoming === 'string' && INCOMING_ID.test(incoming) ? incoming : randomUUID();
    installLazyLog(Object.getPrototypeOf(req) as object);
    (req as WithLog)[BASE] = log;
    res.setHeader('X-Request-Id', req.id);
    const started = performance.now();
    res.on('finish', () => {
      const level = requestLogLevel(req.method, res.statusCode, req.headers.authorization !== undefined);
      if (!log.isLevelEnabled(level)) return;
      const ms = performance.now() - started;
      const line = { method: req.method, path: req.originalUrl.split('?')[0], status: res.statusCode, ms: Math.round(ms * 10) / 10 };
      // The request's own logger when it has one; else the same line from the base logger.
      const own = (req as WithLog)[CHILD];
      if (own) own[level](line, 'request');
      else log[level]({ requestId: req.id, ...line }, 'request');
    });
    next();
  };
}
