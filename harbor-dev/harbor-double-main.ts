// `make harbor-double`: the Harbor API double on its own, for trying the admin API and the
// CLI without a Harbor. State is kept in memory until the process stops.
//   node dist/harbor-dev/harbor-double-main.js [--port 8090] [--host 127.0.0.1] [--spec <swagger.yaml>]
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startHarborDouble } from './harbor-double.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8090' },
    host: { type: 'string', default: '127.0.0.1' },
    spec: { type: 'string', default: join(process.cwd(), '..', 'shared', 'harbor', 'swagger-v2.15.2.yaml') },
  },
});
const admin = { username: 'admin', password: 'Harbor12345' };
const double = await startHarborDouble(values.spec!, admin, { port: Number(values.port), host: values.host });
process.stdout.write(`Harbor API double on ${double.url} (${admin.username} / ${admin.password}); every request is checked against ${values.spec}\n`);
process.stdout.write(`  export HARBOR_URL=${double.url} HARBOR_USERNAME=${admin.username} HARBOR_PASSWORD=${admin.password}\n`);
const stop = () => {
  if (double.violations.length) process.stderr.write(`requests that broke Harbor's spec:\n  ${double.violations.join('\n  ')}\n`);
  void double.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
