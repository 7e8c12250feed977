// The legend of the current colour mode: a colour bar for years, swatches with counts for categories.

import { BACKGROUND } from './colors.js';
import { clear, el, fmt } from './dom.js';

/** background: {n, name} of a reference map drawn in grey under the points, listed after the colours. */
export function renderLegend(node, legend, title, background) {
  clear(node);
  if (legend) renderColours(node, legend, title);
  if (background) node.appendChild(item(BACKGROUND, background.name, background.n));
}

function renderColours(node, legend, title) {
  node.appendChild(el('div', { class: 'cm-legend-title' }, title));
  if (legend.kind === 'bar') {
    const stops = legend.colors.map((c, i) => `${c} ${((i / (legend.colors.length - 1)) * 100).toFixed(1)}%`);
    node.appendChild(el('div', { class: 'cm-colorbar', style: { background: `linear-gradient(to right, ${stops})` } }));
    let mid = (legend.min + legend.max) / 2;
    if (Number.isInteger(legend.min) && Number.isInteger(legend.max) && !Number.isInteger(mid)) mid = null;
    node.appendChild(
      el('div', { class: 'cm-colorbar-ticks' }, el('span', {}, (legend.clipLow ? '≤ ' : '') + tick(legend.min)),
        el('span', {}, mid === null ? '' : tick(mid)), el('span', {}, (legend.clipHigh ? '≥ ' : '') + tick(legend.max))),
    );
  }
  for (const it of legend.items) if (it.count || !it.hideEmpty) node.appendChild(item(it.color, it.name, it.count));
}

function item(color, name, count) {
  return el(
    'div',
    { class: 'cm-legend-item' },
    color ? el('span', { class: 'cm-swatch', style: { background: color } }) : el('span', { class: 'cm-swatch cm-swatch-none' }),
    el('span', { class: 'cm-legend-name', title: name }, name),
    el('span', { class: 'cm-legend-count' }, fmt.format(count)),
  );
}

function tick(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
