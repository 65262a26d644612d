import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger };

/**
 * JSON logs on stdout. Messages are static; values go in fields, so logs can be queried.
 * Secrets never reach a log line: the Authorization header is redacted at the source.
 */
export function createLogger(level: LogLevel, name = 'satellite'): Logger {
  return pino({
    name,
    level,
    base: { pid: process.pid },
    redact: { paths: ['req.headers.authorization', 'password', '*.password'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
