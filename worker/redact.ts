// Secrets must never reach a log line, a job's stored failure (shown on the dashboard) or a
// child's command line. A CLI's error carries its whole command and output; whatever comes
// back from a child is passed through this before it is logged or thrown.

const CENSOR = '[redacted]';

export class Redactor {
  private readonly secrets: string[];

  /** `credentials` also hides their Basic and docker-config forms (base64 of "user:password"). */
  constructor(secrets: (string | undefined)[], credentials?: { username: string; password: string }) {
    const all = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 4);
    if (credentials) {
      all.push(credentials.password, Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64'));
    }
    // Longest first, so a secret that contains another is hidden whole.
    this.secrets = [...new Set(all)].sort((a, b) => b.length - a.length);
  }

  text(value: string): string {
    let out = value;
    for (const s of this.secrets) out = out.split(s).join(CENSOR);
    return out;
  }

  /** Hides the secrets in an error's message and stack, in place, and returns it. */
  error<T>(err: T): T {
    if (err instanceof Error) {
      err.message = this.text(err.message);
      if (err.stack) err.stack = this.text(err.stack);
    }
    return err;
  }
}
