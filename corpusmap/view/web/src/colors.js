// Colour modes: each gives a palette index per point (regl-scatterplot's categorical valueA), the palette and
// a legend. Year uses a 32-step viridis bar; labels a categorical palette (largest first), clusters its colours
// chosen so that touching regions differ.

export const CATEGORICAL = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#bcbd22', '#17becf',
  '#aec7e8', '#ffbb78', '#98df8a', '#ff9896', '#c5b0d5', '#c49c94', '#f7b6d2', '#dbdb8d', '#9edae5',
];
export const VIRIDIS = [
  '#440154', '#470d60', '#48186a', '#482374', '#472e7c', '#453882', '#424186', '#3e4a89', '#3a548c', '#365d8d',
  '#32658e', '#2e6d8e', '#2b758e', '#287d8e', '#25848e', '#228c8d', '#1f948c', '#1e9c89', '#20a386', '#25ab82',
  '#2eb37c', '#3aba76', '#48c16e', '#58c765', '#6ccd5a', '#7fd34e', '#93d741', '#a8db34', '#c0df25', '#d5e21a',
  '#eae51a', '#fde725',
];
export const OTHER = '#a9a9a9';
export const NONE = '#dcdcdc';
export const BACKGROUND = '#b4b4b4';  // a reference map under the points (density.py's grey as it shows over white)
export const PLAIN = '#3b6ea8';
export const HIT = '#d62728';

export function plainMode(n) {
  return { z: new Float32Array(n), palette: [PLAIN, PLAIN], legend: null };
}

/** Years on the viridis bar between range.colour_min and colour_max (values outside take the end colours). */
export function yearMode(years, range) {
  const n = years.length;
  const z = new Float32Array(n);
  const steps = VIRIDIS.length;
  const lo = range.colour_min ?? range.min;
  const hi = range.colour_max ?? range.max;
  const span = hi - lo || 1;
  for (let i = 0; i < n; i++) {
    const y = years[i];
    if (Number.isNaN(y)) {
      z[i] = steps;
    } else {
      z[i] = Math.min(steps - 1, Math.max(0, Math.floor(((y - lo) / span) * steps)));
    }
  }
  const unknown = { color: NONE, name: 'unknown year', slots: [steps], hideEmpty: true };
  if (hi === lo) {  // one year: a swatch with its count, not a bar from the year to itself
    return { z, palette: [...VIRIDIS, NONE], legend: { items: [{ color: VIRIDIS[0], name: String(lo), slots: [0] }, unknown] } };
  }
  return {
    z,
    palette: [...VIRIDIS, NONE],
    legend: {
      kind: 'bar', min: lo, max: hi, clipLow: lo > range.min, clipHigh: hi < range.max, colors: VIRIDIS,
      items: [unknown],
    },
  };
}

/**
 * Categories by code (none = any code outside names). order: codes, most important first; the first
 * `coloured` of them (at most one per palette colour, so that no two share one) get their own colour, the rest
 * share OTHER. Every colour is in the legend.
 */
export function categoryMode(codes, names, order, { coloured = CATEGORICAL.length } = {}) {
  const n = codes.length;
  const k = names.length;
  coloured = Math.min(coloured, order.length, CATEGORICAL.length);
  const slot = new Uint32Array(k + 1).fill(coloured);
  order.slice(0, coloured).forEach((code, i) => {
    slot[code] = i;
  });
  slot[k] = coloured + 1;
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) z[i] = slot[codes[i] < k ? codes[i] : k];
  const palette = [...CATEGORICAL.slice(0, coloured), OTHER, NONE];
  const items = order.slice(0, coloured).map((code, i) => ({ color: palette[i], name: names[code], slots: [i] }));
  const rest = order.length - coloured;
  if (rest) items.push({ color: OTHER, name: `other (${rest})`, slots: [coloured], other: true });
  items.push({ color: NONE, name: 'none', slots: [coloured + 1], other: true, hideEmpty: true });
  return { z, palette, legend: { kind: 'categories', items } };
}

/**
 * Regions (clusters) by code, each in its palette colour (colours[code]: touching regions differ, the page
 * builder chose them), so that no region is left grey. The legend lists the regions of the first `listed` in
 * order (largest first) and counts the rest in one line.
 */
export function regionMode(codes, names, order, colours, { listed = CATEGORICAL.length } = {}) {
  const n = codes.length;
  const k = names.length;
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) z[i] = codes[i] < k ? codes[i] : k;
  const palette = [...colours.map((c) => CATEGORICAL[c % CATEGORICAL.length]), NONE];
  const items = order.slice(0, listed).map((code) => ({ color: palette[code], name: names[code], slots: [code] }));
  const rest = order.slice(listed);
  if (rest.length) {
    items.push({ color: null, name: `${rest.length} more clusters`, slots: rest, other: true });
  }
  items.push({ color: NONE, name: 'none', slots: [k], other: true, hideEmpty: true });
  return { z, palette, legend: { kind: 'categories', items } };
}

export function wordsMode(mask, words) {
  const n = mask.length;
  const z = new Float32Array(n);
  for (let i = 0; i < n; i++) if (!mask[i]) z[i] = 1;
  return {
    z,
    palette: [HIT, NONE],
    hits: mask,
    legend: {
      kind: 'categories',
      items: [
        { color: HIT, name: `contains ${words.join(', ')}`, slots: [0] },
        { color: NONE, name: 'other', slots: [1], other: true },
      ],
    },
  };
}

/** Set each legend item's count: the points whose palette index is one of its slots, among those kept
 * (keep: a 0/1 mask, e.g. the year range; null for all points). */
export function countLegend(legend, z, keep = null) {
  if (!legend || !legend.items) return legend;
  const perSlot = new Float64Array(Math.max(0, ...legend.items.flatMap((it) => it.slots)) + 1);
  for (let i = 0; i < z.length; i++) if (!keep || keep[i]) perSlot[z[i]]++;
  for (const it of legend.items) it.count = it.slots.reduce((sum, s) => sum + perSlot[s], 0);
  return legend;
}
