// How the service's processes (`satellite serve|adapter|worker`) start: settings that take
// effect only when a process starts, so every launcher passes them itself: the bin's `#!`
// line (cli/main.ts), `make install`'s wrapper (Makefile), harbor-dev/run.sh and the service
// image (deploy/images/service.Containerfile); test/cli/launchers.test.ts checks each, and
// the tests and benches spawn the service with them (test/support/process.ts, bench/state.ts).
//
// Measured on a 100,000-entry group's first build (bench/state.ts, 2-core machine, 2026-12-08),
// peak RSS of the worker process, six runs each:
// - V8's young generation left to grow to 16 MiB semi-spaces held 32 MiB at the peak, most of
//   it garbage between scavenges; 8 MiB semi-spaces: 152-162 -> 143-153 MiB, no more CPU
//   (4 and 2 MiB: no lower, and more CPU). `--max-semi-space-size` is read when V8 sets up
//   its heap (v8.setFlagsFromString at run time changes nothing).
// - glibc gives each thread that allocates its own malloc arena (zlib's compressions run on
//   libuv's four threads), and what they free stays mapped: two arenas take another 3-7 MiB
//   off (136-141 MiB), for no CPU that the runs could tell.

/** V8 flags, before the script on node's command line. */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];

/** Environment the process starts with. */
export const SERVICE_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };
