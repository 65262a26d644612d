import type { Server } from 'node:net';

/** A listener that could not be opened, named by the variables that choose its address. */
export class ListenError extends Error {
  constructor(readonly portVariable: string, readonly hostVariable: string, host: string, port: number, cause: NodeJS.ErrnoException) {
    const why = cause.code === 'EADDRINUSE' ? 'the port is already in use (choose another, or stop what listens there)'
      : cause.code === 'EACCES' ? 'permission denied (a port below 1024 needs privileges; choose another)'
        : cause.code === 'EADDRNOTAVAIL' || cause.code === 'ENOTFOUND' ? `${hostVariable}=${host} is not an address of this machine`
          : cause.message;
    super(`${portVariable}=${port} (${hostVariable}=${host}): cannot listen: ${why}`);
    this.name = 'ListenError';
  }
}

/**
 * Starts listening, and fails with a ListenError naming the variables when the address
 * cannot be taken. Written out because express 5's app.listen hands a listen error to its
 * callback as if listening had succeeded, which then failed later as "Cannot destructure
 * property 'port' of … null".
 */
export function listen<S extends Server>(server: S, port: number, host: string, vars: { port: string; host: string }): Promise<S> {
  return new Promise<S>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => reject(new ListenError(vars.port, vars.host, host, port, err));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server);
    });
  });
}
