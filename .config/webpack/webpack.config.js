/*
 * Frontend build of the Live Service Map data source.
 *
 * Follows the grafana/create-plugin webpack conventions (AMD output, Grafana's shared
 * packages as externals, public path under public/plugins/<id>/), with two differences:
 *   - plugin.json lives at the repository root, not in src/;
 *   - dist/ is shared with the Go build (mage): cleaning keeps the backend binaries
 *     (gpx_servicemap_<os>_<arch>[.exe]) and go_plugin_build_manifest.
 */
const fs = require('fs');
const path = require('path');
const CopyWebpackPlugin = require('copy-webpack-plugin');

const ROOT_DIR = path.resolve(__dirname, '..', '..');
const SOURCE_DIR = path.join(ROOT_DIR, 'src');
const DIST_DIR = path.join(ROOT_DIR, 'dist');
const PLUGIN_JSON = path.join(ROOT_DIR, 'plugin.json');

const pluginJson = JSON.parse(fs.readFileSync(PLUGIN_JSON, 'utf8'));
const packageJson = JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'package.json'), 'utf8'));

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// Files in dist/ that belong to the Go build and must survive a frontend build.
const executable = pluginJson.executable || 'gpx_';
const KEEP_BACKEND = new RegExp(
  `^(${escapeRegExp(executable)}(_.*)?|.*_(amd64|arm(64)?|386)(\\.exe)?|go_plugin_build_manifest)$`
);

// dist/plugin.json carries the package.json version and the build date. The root plugin.json also
// holds a real version (not a %VERSION% token) because the Go build copies it into dist/ as it is.
function pluginJsonForDist(content) {
  const json = JSON.parse(replaceTokens(content));
  json.info = { ...json.info, version: packageJson.version, updated: new Date().toISOString().substring(0, 10) };
  return JSON.stringify(json, null, 2) + '\n';
}

function replaceTokens(content) {
  return content
    .toString()
    .replace(/%VERSION%/g, packageJson.version)
    .replace(/%TODAY%/g, new Date().toISOString().substring(0, 10))
    .replace(/%PLUGIN_ID%/g, pluginJson.id);
}

module.exports = (env = {}) => {
  const production = Boolean(env.production);

  return {
    cache: {
      type: 'filesystem',
      buildDependencies: { config: [__filename] },
    },
    context: SOURCE_DIR,
    devtool: production ? 'source-map' : 'eval-source-map',
    entry: { module: './module.ts' },
    externals: [
      'lodash',
      'jquery',
      'moment',
      'slate',
      'emotion',
      '@emotion/react',
      '@emotion/css',
      'prismjs',
      'slate-plain-serializer',
      '@grafana/slate-react',
      'react',
      'react-dom',
      'react-redux',
      'redux',
      'rxjs',
      'react-router',
      'react-router-dom',
      'd3',
      'angular',
      '@grafana/ui',
      '@grafana/runtime',
      '@grafana/data',
      // Legacy SDK imports ("grafana/app/...") resolve to Grafana's own modules.
      ({ request }, callback) => {
        const prefix = 'grafana/';
        if (request && request.indexOf(prefix) === 0) {
          return callback(undefined, request.substring(prefix.length));
        }
        return callback();
      },
    ],
    mode: production ? 'production' : 'development',
    module: {
      rules: [
        {
          exclude: /node_modules/,
          test: /\.[tj]sx?$/,
          use: {
            loader: 'swc-loader',
            options: {
              jsc: {
                baseUrl: SOURCE_DIR,
                target: 'es2015',
                loose: false,
                parser: { syntax: 'typescript', tsx: true, decorators: false, dynamicImport: true },
              },
            },
          },
        },
        { test: /\.css$/, use: ['style-loader', 'css-loader'] },
        {
          test: /\.(png|jpe?g|gif|svg)$/,
          type: 'asset/resource',
          generator: {
            publicPath: `public/plugins/${pluginJson.id}/img/`,
            outputPath: 'img/',
            filename: production ? '[hash][ext]' : '[file]',
          },
        },
      ],
    },
    output: {
      clean: {
        keep: (asset) => KEEP_BACKEND.test(path.basename(asset)),
      },
      filename: '[name].js',
      library: { type: 'amd' },
      path: DIST_DIR,
      publicPath: `public/plugins/${pluginJson.id}/`,
      uniqueName: pluginJson.id,
    },
    plugins: [
      new CopyWebpackPlugin({
        patterns: [
          { from: PLUGIN_JSON, to: '.', transform: pluginJsonForDist },
          { from: path.join(ROOT_DIR, 'README.md'), to: '.', transform: replaceTokens, noErrorOnMissing: true },
          { from: path.join(ROOT_DIR, 'CHANGELOG.md'), to: '.', noErrorOnMissing: true },
          { from: path.join(ROOT_DIR, 'LICENSE'), to: '.', noErrorOnMissing: true },
          { from: 'img/**/*', to: '.', noErrorOnMissing: true },
        ],
      }),
    ],
    performance: { hints: false },
    resolve: {
      extensions: ['.js', '.jsx', '.ts', '.tsx'],
      modules: [SOURCE_DIR, 'node_modules'],
      unsafeCache: true,
    },
  };
};
