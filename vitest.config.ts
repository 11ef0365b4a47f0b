import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Network-namespace and strongSwan suites share host resources (netns names,
    // ports); they serialise themselves through test/support/lock.ts.
    pool: 'forks',
    reporters: ['default'],
  },
});
