// Cluster names drawn over the map by zoom level (never coarser than the level the points are coloured by): the
// coarsest level at the whole-map view (and farther out),
// and a finer level each time zooming in has made room for its names (the screen shows 1/zoom² of the map, so a
// level of m names shows once m / zoom² is within the coarsest level's count, or BASE if that is fewer). Names
// are placed at each cluster's medoid (from the writer; zoomed in past it, at the cluster's anchor on screen
// nearest the middle), largest clusters first, moved inside the map where the
// medoid is on screen but the name would cross its edge; a name that would overlap one already placed moves just
// above, below or beside its medoid, and is left out only when none of those places is free.

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
    this.present = null;  // per level, 1 for the clusters with a point in the year range (null: no filter)
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

  /** Screen position of cluster c's name: its medoid, or, zoomed in so far that the medoid is off screen, the
   * anchor on screen nearest the middle (in each cell of a grid, the member nearest its members' mean there:
   * from the writer). */
  anchor(level, c, width, height) {
    const on = ([x, y]) => x >= 0 && x <= width && y >= 0 && y <= height;
    const medoid = this.project(level.x[c], level.y[c]);
    const more = (level.anchors || [])[c] || [];
    if (on(medoid) || !more.length) return medoid;
    let best = medoid;
    let bestDistance = Infinity;
    for (let j = 0; j < more.length; j += 2) {
      const p = this.project(more[j], more[j + 1]);
      const d = Math.hypot(p[0] - width / 2, p[1] - height / 2);
      if (on(p) && d < bestDistance) [best, bestDistance] = [p, d];
    }
    return best;
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
    const present = this.present && this.present[i];
    for (const c of level.order) {
      const node = nodes[c];
      if (present && !present[c]) {
        node.style.display = 'none';
        continue;
      }
      const [w, h] = sizes[c];
      const [ax, ay] = this.anchor(level, c, width, height);
      const onScreen = ax >= 0 && ax <= width && ay >= 0 && ay <= height;
      const inside = onScreen && w + 2 * EDGE <= width && h + 2 * EDGE <= height;
      const free = (box) => !obstacles.some((p) => overlaps(p, box)) && !placed.some((p) => overlaps(p, box));
      const box = inside ? offsets(w, h).map(([ox, oy]) => boxAt(ax + ox, ay + oy, w, h, width, height)).find(free) : null;
      if (box) {
        placed.push(box);
        node.style.transform = `translate(${box[0].toFixed(1)}px, ${box[1].toFixed(1)}px)`;
        node.style.display = '';
      } else {
        node.style.display = 'none';
      }
    }
  }
}

/** Where a name of w x h px may go around its anchor: on it, then just above, below, left and right of it. */
function offsets(w, h) {
  const v = h + GAP;
  const u = w / 2 + GAP;
  return [[0, 0], [0, -v], [0, v], [-u, 0], [u, 0], [0, -2 * v], [0, 2 * v]];
}

/** The box of a w x h name centred at (x, y), moved inside the map (EDGE px from its edges). */
function boxAt(x, y, w, h, width, height) {
  const dx = Math.max(0, w / 2 + EDGE - x) - Math.max(0, x + w / 2 + EDGE - width);
  const dy = Math.max(0, h / 2 + EDGE - y) - Math.max(0, y + h / 2 + EDGE - height);
  return [x + dx - w / 2, y + dy - h / 2, x + dx + w / 2, y + dy + h / 2];
}

function overlaps(a, b) {
  return a[0] < b[2] + GAP && b[0] < a[2] + GAP && a[1] < b[3] + GAP && b[1] < a[3] + GAP;
}
