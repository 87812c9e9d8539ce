// IGPO's public surface (`igpo-ts/igpo`): the environment, the rewards and probes, the registry of
// algorithms, advantages and losses, the trainer, the study (compare, report) and their file formats.
// The command line is igpo/cli.ts (`igpo`), not part of this surface.

export * from './env.js';
export * from './reward.js';
export * from './rollout.js';
export * from './algorithms.js';
export * from './estimator.js';
export * from './advantage.js';
export * from './baselines.js';
export * from './value.js';
export * from './loss.js';
export * from './update.js';
export * from './metrics.js';
export * from './stats.js';
export * from './presets.js';
export * from './config.js';
export * from './trainer.js';
export * from './results.js';
export { runCompare, planRuns, studyOf, type CompareJob } from './compare.js';
export { runReport, loadStudies, studyReport, type Study } from './report.js';
