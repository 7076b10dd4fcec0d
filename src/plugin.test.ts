import fs from 'fs';
import path from 'path';

// plugin.json sits at the repository root; both the Go build and webpack read it.
const root = path.resolve(__dirname, '..');
const pluginJson = JSON.parse(fs.readFileSync(path.join(root, 'plugin.json'), 'utf8'));
const packageJson = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

describe('plugin.json', () => {
  it('declares the backend data source with alerting, annotations and metrics', () => {
    expect(pluginJson).toMatchObject({
      type: 'datasource',
      id: 'livemap-servicemap-datasource',
      name: 'Live Service Map',
      backend: true,
      alerting: true,
      annotations: true,
      metrics: true,
      executable: 'gpx_servicemap',
      dependencies: { grafanaDependency: '>=10.4.0', plugins: [] },
    });
    expect(pluginJson.info.author.name).toBe('Live Service Map team');
  });

  it('points at logos that exist in src/', () => {
    for (const logo of [pluginJson.info.logos.small, pluginJson.info.logos.large]) {
      expect(fs.existsSync(path.join(root, 'src', logo))).toBe(true);
    }
  });

  it('has the package.json version, since the Go build copies it into dist/ unchanged', () => {
    expect(pluginJson.info.version).toBe(packageJson.version);
    expect(pluginJson.info.updated).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  });
});
