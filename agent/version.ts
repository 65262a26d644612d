/** The agent's version, reported to the fleet view; kept equal to package.json's by a test. */
export const AGENT_VERSION = '0.1.0';
