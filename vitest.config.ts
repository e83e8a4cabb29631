import {defineConfig} from 'vitest/config';

export default defineConfig({
  test: {
    // One test file at a time across projects: the integration and fault files each run PostgreSQL clusters,
    // radosgw and (patroni) etcd/HAProxy on 2 cores; side by side they starve each other's timeouts.
    maxWorkers: 1,
    projects: [
      {test: {name: 'unit', include: ['test/unit/**/*.test.ts']}},
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/helpers/global-setup.ts'],
          testTimeout: 240_000,
          hookTimeout: 240_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'fault',
          include: ['test/fault/**/*.test.ts'],
          globalSetup: ['test/helpers/global-setup.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
