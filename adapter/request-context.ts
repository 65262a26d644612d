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

/**
 * Gives every request an id (the caller's X-Request-Id when it is sane) and a child logger
 * carrying it, and logs one line when the answer is finished (see requestLogLevel).
 */
export function requestContext(log: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const incoming = req.headers['x-request-id'];
    req.id = typeof incoming === 'string' && INCOMING_ID.test(incoming) ? incoming : randomUUID();
    req.log = log.child({ requestId: req.id });
    res.setHeader('X-Request-Id', req.id);
    const started = process.hrtime.bigint();
    const path = req.originalUrl.split('?')[0];
    res.on('finish', () => {
      const level = requestLogLevel(req.method, res.statusCode, req.headers.authorization !== undefined);
      if (!req.log.isLevelEnabled(level)) return;
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      req.log[level]({ method: req.method, path, status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'request');
    });
    next();
  };
}
