// Jest setup for the frontend of the Live Service Map data source.
// Follows the grafana/create-plugin conventions: SWC transform, jsdom, setup file at the root.

// Grafana's packages pull in a few dependencies that ship only ES modules; jest must transform them.
const esModules = [
  'ol',
  'react-colorful',
  'd3',
  'd3-[a-z-]+',
  'internmap',
  'delaunator',
  'robust-predicates',
  'uuid',
  'marked',
  'rxjs',
  '@grafana/schema',
];

module.exports = {
  moduleNameMapper: {
    '\\.(css|scss|sass)$': 'identity-obj-proxy',
    '^react-inlinesvg$': '<rootDir>/.config/jest/mocks/react-inlinesvg.js',
  },
  modulePaths: ['<rootDir>/src'],
  setupFilesAfterEnv: ['<rootDir>/jest-setup.js'],
  testEnvironment: 'jest-environment-jsdom',
  // Driving @grafana/ui selects under jsdom is slow, more so on a busy 2-core machine.
  testTimeout: 60000,
  testMatch: ['<rootDir>/src/**/__tests__/**/*.{js,jsx,ts,tsx}', '<rootDir>/src/**/*.{spec,test,jest}.{js,jsx,ts,tsx}'],
  transform: {
    '^.+\\.(t|j)sx?$|^.+\\.mjs$': [
      '@swc/jest',
      {
        sourceMaps: true,
        jsc: {
          parser: {
            syntax: 'typescript',
            tsx: true,
            decorators: false,
            dynamicImport: true,
          },
        },
      },
    ],
  },
  transformIgnorePatterns: [`node_modules/(?!(${esModules.join('|')})/)`],
};
