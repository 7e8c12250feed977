// Cluster names drawn over the map by zoom level (never coarser than the level the points are coloured by): the
// coarsest level at the whole-map view (and farther out),
// and a finer level each time zooming in has made room for its names (the screen shows 1/zoom² of the map, so a
// level of m names shows once m / zoom² is within the coarsest level's count, or BASE if that is fewer). Names
// are placed at each cluster's robust centre (median, from the writer), largest clusters first, moved inside the
// map where the centre is on screen but the name would cross its edge; a name that would overlap one already
// placed is left out.

import { el } from './dom.js';

const BASE = 8;
const GAP = 3;
const EDGE = 8;  // px: a name near the window's edge is moved in this far from it

export class ClusterLabels {
  constructor(container, levels, project) {
    this.levels = levels;
    this.project = project;
    this.layer = el('div', { class: 'cm-labels', 'aria-hidden': 'true' });
    container.appendChild(this.layer);
    this.nodes = levels.map(() => null);
    this.sizes = levels.map(() => null);
    this.shownLevel = -1;
    this.enabled = true;
    this.minLevel = 0;  // colouring by a cluster level: names of that level or finer, never coarser
  }

  /** Index of the level to show at zoom factor z (1 = the whole-map view). */
  levelFor(zoom) {
    return Math.max(this.minLevel, this.zoomLevel(zoom));
  }

  zoomLevel(zoom) {
    if (zoom <= 1.0001) return 0;
    const room = Math.max(this.levels[0].names.length, BASE) * zoom * zoom;
    let chosen = 0;
    this.levels.forEach((level, i) => {
      if (level.names.length <= room) chosen = i;
    });
    return chosen;
  }

  nodesOf(i) {
    if (!this.nodes[i]) {
      const level = this.levels[i];
      const cls = `cm-label cm-label-${Math.min(i, 2)}`;
      const nodes = level.names.map((name) => el('div', { class: cls, style: { visibility: 'hidden' } }, name));
      nodes.forEach((node) => this.layer.appendChild(node));
      this.sizes[i] = nodes.map((node) => [node.offsetWidth, node.offsetHeight]);
      nodes.forEach((node) => {
        node.style.display = 'none';
        node.style.visibility = '';
      });
      this.nodes[i] = nodes;
    }
    return this.nodes[i];
  }

  /** Place the names for zoom factor zoom; obstacles are [x0, y0, x1, y1] boxes (panels) to keep clear of. */
  update(zoom, width, height, obstacles = []) {
    if (!this.levels.length) return;
    const i = this.enabled ? this.levelFor(zoom) : -1;
    if (i !== this.shownLevel && this.shownLevel >= 0) {
      for (const node of this.nodes[this.shownLevel]) node.style.display = 'none';
    }
    this.shownLevel = i;
    if (i < 0) return;
    const level = this.levels[i];
    const nodes = this.nodesOf(i);
    const sizes = this.sizes[i];
    const placed = [];
    for (const c of level.order) {
      const node = nodes[c];
      const [w, h] = sizes[c];
      const [sx, sy] = this.project(level.x[c], level.y[c]);
      const onScreen = sx >= 0 && sx <= width && sy >= 0 && sy <= height;
      const dx = Math.max(0, w / 2 + EDGE - sx) - Math.max(0, sx + w / 2 + EDGE - width);
      const dy = Math.max(0, h / 2 + EDGE - sy) - Math.max(0, sy + h / 2 + EDGE - height);
      const box = [sx + dx - w / 2, sy + dy - h / 2, sx + dx + w / 2, sy + dy + h / 2];
      const inside = onScreen && w + 2 * EDGE <= width && h + 2 * EDGE <= height;
      if (inside && !obstacles.some((p) => overlaps(p, box)) && !placed.some((p) => overlaps(p, box))) {
        placed.push(box);
        node.style.transform = `translate(${box[0].toFixed(1)}px, ${box[1].toFixed(1)}px)`;
        node.style.display = '';
      } else {
        node.style.display = 'none';
      }
    }
  }
}

function overlaps(a, b) {
  return a[0] < b[2] + GAP && b[0] < a[2] + GAP && a[1] < b[3] + GAP && b[1] < a[3] + GAP;
}
