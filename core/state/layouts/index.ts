import { harborSatelliteLayout } from './harbor-satellite.js';
import type { StateLayout } from './layout.js';
import { ociLayout } from './oci.js';

// The state layouts STATE_LAYOUT may name. A new layout is a module of its own
// (layout.ts says what it decides) and one registerLayout call here.

export type { LayoutEntry, LayoutRobotAccess, StateLayout } from './layout.js';

const layouts = new Map<string, StateLayout>();

/** Makes a layout available to STATE_LAYOUT; a name is registered once. */
export function registerLayout(layout: StateLayout): void {
  if (layouts.has(layout.name)) throw new Error(`a state layout named ${layout.name} is registered already`);
  layouts.set(layout.name, layout);
}

registerLayout(ociLayout);
registerLayout(harborSatelliteLayout);

/** The names STATE_LAYOUT accepts, in the order they were registered. */
export function layoutNames(): string[] {
  return [...layouts.keys()];
}

/** The layout of that name; the configuration checked it exists, so an unknown name is a bug. */
export function layoutNamed(name: string): StateLayout {
  const layout = layouts.get(name);
  if (!layout) throw new Error(`no state layout named ${name} (registered: ${layoutNames().join(', ')})`);
  return layout;
}
