import type { GroupState } from './render.js';

/**
 * The state as a layout's satellites read it. Harbor Satellite's satellites pull every entry
 * by tag and stop at the first failure, and they learn of a deletion by the entry's absence
 * (they ignore `deleted`): in the "harbor-satellite" layout, tombstones and signature
 * entries are left out. The "oci" layout keeps everything.
 */
export function stateForLayout(state: GroupState, layout: 'oci' | 'harbor-satellite'): GroupState {
  if (layout === 'oci') return state;
  return { ...state, artifacts: state.artifacts.filter((a) => !a.deleted && a.type !== 'SIGNATURE') };
}
