import type { CompressedState, PackagedDelta, PackagedState } from '../artifact.js';

// What makes one state layout differ from another: one module per layout in this folder
// (oci.ts, harbor-satellite.ts), each registered once in index.ts. The worker, the Harbor
// domain and the CLI ask the layout; none of them names one.

/** An entry of a group's state as a layout's filter sees it: a listed row or a rendered artifact. */
export interface LayoutEntry {
  deleted?: boolean | undefined;
  /** IMAGE, INDEX, SIGNATURE, … (the rendered artifact's `type`). */
  type: string;
}

/** What a satellite's Harbor robot may do in each project it reads (Harbor's robot permission access). */
export interface LayoutRobotAccess {
  resource: string;
  action: string;
}

export interface StateLayout {
  /** Its STATE_LAYOUT value, recorded with every version (state_versions.layout). */
  readonly name: string;
  /** Entries the layout's satellites must not be given; absent when they get every entry. */
  readonly leavesOut?: (entry: LayoutEntry) => boolean;
  /**
   * Whether a version is packed from its gzip'd full layer (StateContent.fullLayer) with a
   * delta from the previous version, as core/state/format.ts describes: then a worker may
   * take up the content of a kept package, and `package` gets the compressed layer; else
   * `package` gets the state document itself.
   */
  readonly deltas: boolean;
  /** The OCI package of a version: its manifest and blobs. */
  package(json: Buffer | CompressedState, created: Date, delta?: PackagedDelta): PackagedState;
  /** Tags put on a version besides v<N> and `latest` (before `latest` moves). */
  extraTags(created: Date): string[];
  /** What the robot of a satellite reading this layout may do in the state project and its images' projects. */
  readonly robotAccess: readonly LayoutRobotAccess[];
  /**
   * Whether the satellites are Harbor Satellite's (container-registry/harbor-satellite):
   * then this service also answers their zero-touch registration and heartbeats and
   * publishes each one's satellite and config states (harbor/harbor-satellite.ts).
   */
  readonly harborSatellites: boolean;
}
