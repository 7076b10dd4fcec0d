// Icons in @grafana/ui load their SVG over HTTP through react-inlinesvg; under jsdom that only
// produces act() warnings. Tests render a plain <svg> with the same id and title instead.
const React = require('react');

function InlineSVG({ src, title, innerRef, cacheRequests, preProcessor, loader, onLoad, onError, ...rest }) {
  return React.createElement('svg', { 'data-src': src, ref: innerRef, ...rest }, title ? React.createElement('title', null, title) : null);
}

module.exports = InlineSVG;
module.exports.default = InlineSVG;
module.exports.cacheStore = {};
